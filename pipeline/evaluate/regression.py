"""The CI regression floor of a weights folder (``model.json`` → ``regression``), from a measurement.

`tests/models/test_shipped_weights.py` segments a few development cases with ``models/weights``
and fails below these floors, so that a broken model, ONNX export or preprocessing change cannot
land green. The floors are what the weights score on those cases now (every runtime the weights
ship: float32 and the int8 copies), less a margin: ``floor = round_down(min over runtimes of the
measured value - margin, 2 decimals)``. Written by ``lgenode pipeline regression-spec``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date

DICE_MARGIN = 0.03
CCC_MARGIN = 0.05
MIN_LV_IN_ROI = 0.99
CLASSES = {"emidec-png": ("lv_cavity", "myocardium_normal", "infarct", "no_reflow"),
           "myops-nifti": ("lv_cavity", "myocardium_normal", "infarct")}


def _floor(v: float, margin: float) -> float:
    return max(0.0, math.floor((v - margin) * 100) / 100)


def spec_from(measured: Mapping[str, Mapping[str, Mapping[str, object]]], cases: Mapping[str, Sequence[str]],
              dice_margin: float = DICE_MARGIN, ccc_margin: float = CCC_MARGIN) -> dict[str, object]:
    """The ``regression`` block from ``measured[fmt][runtime]`` = an evaluation summary (what
    ``pipeline.evaluate.run.evaluate`` returns) and the cases it was measured on."""
    min_dice: dict[str, dict[str, float]] = {}
    min_ccc: dict[str, float] = {}
    seen: list[str] = []
    for fmt, by_runtime in measured.items():
        dice = {c: min(float(s["pooled_class_dice"][c]) for s in by_runtime.values())  # type: ignore[index]
                for c in CLASSES[fmt]}
        min_dice[fmt] = {c: _floor(v, dice_margin) for c, v in dice.items()}
        cccs = [s["clinical_agreement"]["infarct_percent"]["ccc"] for s in by_runtime.values()]  # type: ignore[index]
        ccc = min(float(c) for c in cccs) if all(c is not None for c in cccs) else None  # type: ignore[arg-type]
        if fmt == "emidec-png" and ccc is not None:
            min_ccc[fmt] = _floor(ccc, ccc_margin)
        seen.append(f"{fmt} ({', '.join(sorted(by_runtime))}): pooled Dice "
                    + "/".join(f"{v:.3f}" for v in dice.values())
                    + (f", infarct % CCC {ccc:.3f}" if fmt in min_ccc else ""))
    return {
        "note": (f"CI check of the shipped weights (tests/models/test_shipped_weights.py), measured "
                 f"{date.today().isoformat()} by `lgenode pipeline regression-spec` (lowest over runtimes): "
                 + "; ".join(seen) + f". Floors: measured - {dice_margin} Dice, - {ccc_margin} CCC, rounded down."),
        "emidec_cases": list(cases.get("emidec-png", [])),
        "myops_cases": list(cases.get("myops-nifti", [])),
        "min_pooled_dice": min_dice,
        "min_infarct_percent_ccc": min_ccc,
        "min_lv_in_roi": MIN_LV_IN_ROI,
    }
