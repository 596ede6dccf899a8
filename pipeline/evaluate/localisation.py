"""How well the first stage found the LV: centre error and how much of the LV the ROI kept.

The segmenter only sees the 128x128 ROI cut around the localised centre: a centre far off
either pushes part of the LV out of the ROI (those pixels are background, whatever the
segmenter does) or shows the segmenter a heart off-centre, which training (ground-truth centre
plus a small jitter) rarely saw. Both are reported per case, on the resampled grid the ROI was
cut from, so that a weak Dice can be told apart from a missed heart.
"""

from __future__ import annotations

import numpy as np

from models import preprocess as pp


def localisation_record(info: pp.PreprocessInfo, gt_labels: np.ndarray, mm_per_unit: float = 1.0
                        ) -> dict[str, float | None]:
    """``centre_error``: distance from the used centre to the ground-truth LV centre (centroid
    of labels 1-4 over all slices), in mm divided by ``mm_per_unit`` (1 for mm; the nominal pixel
    spacing for EMIDEC PNGs, whose distances are reported in pixels); ``lv_in_roi``: fraction
    of ground-truth LV pixels (labels 1-4) inside the ROI. None when the case has no LV label."""
    lv = pp.resample_labels_inplane(np.asarray(gt_labels, dtype=np.uint8), info.resample) > 0
    if not lv.any():
        return {"centre_error": None, "lv_in_roi": None}
    gt = pp.lv_centre_from_mask(lv)
    assert gt is not None
    d_px = float(np.hypot(info.centre[0] - gt[0], info.centre[1] - gt[1]))
    error = d_px * info.resample.output_spacing / float(mm_per_unit)
    inside, _ = pp.crop_roi(lv, info.centre, info.crop.size)  # the ROI the segmenter saw
    return {"centre_error": error, "lv_in_roi": float(inside.sum()) / float(lv.sum())}


def summarise(records: list[dict[str, object]]) -> dict[str, object]:
    """Median/p90/max centre error, and cases whose ROI cut off part of the LV (< 99 % kept)."""
    errs = np.array([r["centre_error"] for r in records if r.get("centre_error") is not None], float)
    kept = np.array([r["lv_in_roi"] for r in records if r.get("lv_in_roi") is not None], float)
    if errs.size == 0:
        return {"n_cases": 0}
    return {
        "n_cases": int(errs.size),
        "centre_error_median": float(np.median(errs)),
        "centre_error_p90": float(np.percentile(errs, 90)),
        "centre_error_max": float(errs.max()),
        "lv_in_roi_min": float(kept.min()),
        "cases_lv_cut": int((kept < 0.99).sum()),
    }
