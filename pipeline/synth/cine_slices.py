"""MyoPS cine (bSSFP ``_C0``) and LGE slices on the 128x128 LV-centred ROI, for the CycleGAN.

Layout read (``pipeline.datasets.paths.myops_dir``): labelled ``CaseNNNN_{C0,LGE,gd}.nii.gz`` and
``unlabelled/CaseNNNN_{C0,LGE}.nii.gz``. In MyoPS the C0 and LGE of one case were co-registered
and resampled onto one grid by the challenge, and the ``gd`` labels live on that grid too, so ONE
crop serves all three: ``load_case`` checks that shapes and geometry agree (measured on the 40
shared cases: identical shapes and geometry everywhere) and refuses the case otherwise.

Per case, following the contract of ``models.preprocess``:
1. ``pp.resample_inplane`` of C0 and LGE to 1.25 mm; labels with ``pp.resample_labels_inplane``.
2. LV centre: the ground-truth centre of the ``gd`` mask (``pp.lv_centre_from_mask``) when the case
   is labelled; otherwise found on the LGE stack by the inference path ``pp.preprocess_volume``,
   by default with **no network**, i.e. ``pp.heuristic_lv_centre``. Why: measured on the 15
   labelled MyoPS cases against the mask centre, the shipped localiser (``models/weights``, an
   under-trained EMIDEC fold-0 model) is off by a median 31 mm (11-52 mm), the heuristic by 5 mm
   (0.5-12 mm, one case 53 mm). ``unlabelled_centre="network"`` uses the localiser instead (it
   falls back to the heuristic when it finds nothing). The LGE's centre also serves the C0 (same
   grid). ``centre_source`` records per case which was used ("mask", "heuristic", "network").
3. ``pp.crop_roi`` and ``pp.normalize_intensity`` over each case's ROI stack (C0 and LGE separately).

Masks carry MyoPS labels mapped to EMIDEC classes (``pipeline.datasets.myops.map_labels``:
500->1, 200/1220->2, 2221->3, 600->0); unlabelled slices get an all-zero mask and
``labelled == False``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import models.preprocess as pp
from pipeline.datasets.myops import map_labels, read_nifti_volume
from pipeline.datasets.paths import myops_dir

log = logging.getLogger(__name__)

# Labelled cases kept out of CycleGAN training (both domains) so that cine->LGE can be scored
# against the real LGE of the same slice (PSNR/SSIM). Fixed so every run holds out the same ones:
# 3 + 5 + 5 = 13 slices, covering the 23 mm and 14 mm slice-gap protocols.
DEFAULT_HOLD_OUT: tuple[str, ...] = ("Case3005", "Case3010", "Case3015")

_CASE = re.compile(r"^(Case\d+)_C0\.nii(\.gz)?$")


@dataclass
class CaseFiles:
    case_id: str
    cine: Path
    lge: Path
    gd: Path | None  # None: unlabelled

    @property
    def labelled(self) -> bool:
        return self.gd is not None


@dataclass
class CineLgeSlices:
    """Co-registered ROI slices, one row per (case, slice): cine[i] and lge[i] show the same anatomy."""

    cine: np.ndarray  # (N, 128, 128) float32, normalised per case stack
    lge: np.ndarray  # (N, 128, 128) float32, normalised per case stack
    masks: np.ndarray  # (N, 128, 128) uint8, EMIDEC classes 0-3; zeros where unlabelled
    labelled: np.ndarray  # (N,) bool
    case_ids: list[str]  # (N,) case of each slice
    slice_index: np.ndarray  # (N,) int, slice number within its case
    centre_source: dict[str, str] = field(default_factory=dict)  # case -> "mask" | "network" | "heuristic"
    centres: dict[str, tuple[float, float]] = field(default_factory=dict)  # case -> (row, col), 1.25 mm grid
    # The ROIs before any normalisation (resampled + cropped raw intensities), for per-image
    # normalisation of reference images (normalising an already normalised, clipped stack again is
    # not the same: the clipping at 0 changes the dark levels). None: use the normalised stacks.
    cine_raw: np.ndarray | None = None
    lge_raw: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def cases(self) -> list[str]:
        return list(dict.fromkeys(self.case_ids))

    def select(self, keep: np.ndarray) -> CineLgeSlices:
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        ids = [self.case_ids[i] for i in idx]
        keep_ids = set(ids)
        return CineLgeSlices(self.cine[idx], self.lge[idx], self.masks[idx], self.labelled[idx], ids,
                             self.slice_index[idx],
                             {c: s for c, s in self.centre_source.items() if c in keep_ids},
                             {c: v for c, v in self.centres.items() if c in keep_ids},
                             None if self.cine_raw is None else self.cine_raw[idx],
                             None if self.lge_raw is None else self.lge_raw[idx])

    def per_image(self, which: str) -> np.ndarray:
        """"cine" or "lge" slices with ``pp.normalize_intensity`` applied per image to the raw ROI
        (the synthetic-data contract's image convention)."""
        raw = {"cine": self.cine_raw, "lge": self.lge_raw}[which]
        return normalise_each(raw if raw is not None else getattr(self, which))

    def split(self, hold_out: Iterable[str]) -> tuple[CineLgeSlices, CineLgeSlices]:
        """(training slices, held-out slices) by case."""
        held = set(hold_out)
        mask = np.array([c in held for c in self.case_ids], dtype=bool)
        return self.select(~mask), self.select(mask)

    def summary(self) -> dict[str, object]:
        lab = [c for c in self.cases if self.labelled[self.case_ids.index(c)]]
        return {
            "cases": len(self.cases), "labelled_cases": len(lab), "slices": len(self),
            "labelled_slices": int(self.labelled.sum()),
            "centre_source": {s: sum(v == s for v in self.centre_source.values())
                              for s in sorted(set(self.centre_source.values()))},
        }


def list_case_files(root: str | os.PathLike[str] | None = None, include_unlabelled: bool = True) -> list[CaseFiles]:
    """Cases that have both ``_C0`` and ``_LGE`` (labelled first, then ``unlabelled/``), sorted by id."""
    base = myops_dir(root)
    if not base.is_dir():
        raise FileNotFoundError(f"MyoPS folder not found: {base}")
    folders = [base] + ([base / "unlabelled"] if include_unlabelled and (base / "unlabelled").is_dir() else [])
    out: list[CaseFiles] = []
    for folder in folders:
        for p in sorted(folder.glob("Case*_C0.nii*")):
            m = _CASE.match(p.name)
            if not m:
                continue
            cid = m.group(1)
            lge = next(iter(sorted(folder.glob(f"{cid}_LGE.nii*"))), None)
            if lge is None:
                log.warning("%s: no LGE beside the cine, skipped", cid)
                continue
            gd = next(iter(sorted(folder.glob(f"{cid}_gd.nii*"))), None)
            out.append(CaseFiles(cid, p, lge, gd))
    return out


def default_localiser() -> Callable[[np.ndarray], np.ndarray] | None:
    """The shipped localiser (``models/weights`` or ``$LGENODE_WEIGHTS_DIR``) under ONNX Runtime, or None.

    An ensemble's ``model.json`` names one member's localiser (``fold0/localiser``)."""
    from models.segment import WeightsNotFoundError, read_model_info, weights_dir_default

    weights = weights_dir_default()
    try:
        stem = read_model_info(weights).localiser or "localiser"
    except WeightsNotFoundError:
        stem = "localiser"
    path = weights / f"{stem}.onnx"
    if not path.exists():
        log.warning("no localiser at %s: unlabelled cases are centred by the heuristic", path)
        return None
    from models.runtime import load_predictor

    return load_predictor(path.with_suffix(""), "onnx")


def _same_geometry(a, b, tol: float = 1e-3) -> bool:  # type: ignore[no-untyped-def]
    return (a.pixels.shape == b.pixels.shape
            and np.allclose(a.pixel_spacing, b.pixel_spacing, atol=tol)
            and np.allclose(a.row_direction, b.row_direction, atol=tol)
            and np.allclose(a.column_direction, b.column_direction, atol=tol)
            and np.allclose(a.positions, b.positions, atol=1e-2))


def normalise_each(images: np.ndarray) -> np.ndarray:
    """``pp.normalize_intensity`` per image of (N, H, W); float32."""
    images = np.asarray(images, np.float32)
    return np.stack([pp.normalize_intensity(im) for im in images]).astype(np.float32) if len(images) else images.copy()


@dataclass
class CaseROI:
    cine: np.ndarray  # (n, 128, 128) float32, normalised over the case's ROI stack
    lge: np.ndarray  # (n, 128, 128) float32, normalised over the case's ROI stack
    mask: np.ndarray | None  # (n, 128, 128) uint8, EMIDEC classes; None when unlabelled
    centre: tuple[float, float]  # LV centre (row, col) on the 1.25 mm grid
    centre_source: str  # "mask" | "network" | "heuristic"
    cine_raw: np.ndarray | None = None  # (n, 128, 128) float32 before normalisation
    lge_raw: np.ndarray | None = None


def load_case(files: CaseFiles, localiser: Callable[[np.ndarray], np.ndarray] | None = None) -> CaseROI:
    """One case -> its co-registered cine / LGE / mask ROI stacks (see the module docstring)."""
    cine_vol = read_nifti_volume(files.cine)
    lge_vol = read_nifti_volume(files.lge)
    if not _same_geometry(cine_vol, lge_vol):
        raise ValueError(f"{files.case_id}: C0 {cine_vol.pixels.shape} and LGE {lge_vol.pixels.shape} "
                         "are not on the same grid")
    lge_rs, info = pp.resample_inplane(lge_vol)
    cine_rs, _ = pp.resample_inplane(cine_vol)
    labels = None
    if files.gd is not None:
        gd_vol = read_nifti_volume(files.gd)
        if not _same_geometry(gd_vol, lge_vol):
            raise ValueError(f"{files.case_id}: labels {gd_vol.pixels.shape} not on the LGE grid "
                             f"{lge_vol.pixels.shape}")
        labels = pp.resample_labels_inplane(map_labels(np.rint(gd_vol.pixels).astype(np.int32)), info)
    centre = pp.lv_centre_from_mask(labels) if labels is not None else None
    if centre is not None:
        source = "mask"
    else:
        # The inference path itself (localiser on the globally normalised stack, heuristic fallback).
        _, pinfo = pp.preprocess_volume(lge_vol, localiser=localiser)
        centre, source = pinfo.centre, pinfo.localised_by
    lge_roi, _ = pp.crop_roi(lge_rs, centre)
    cine_roi, _ = pp.crop_roi(cine_rs, centre)
    mask_roi = pp.crop_roi(labels, centre)[0].astype(np.uint8) if labels is not None else None
    return CaseROI(pp.normalize_intensity(cine_roi), pp.normalize_intensity(lge_roi), mask_roi,
                   (float(centre[0]), float(centre[1])), source, cine_roi.astype(np.float32),
                   lge_roi.astype(np.float32))


def load_slices(
    root: str | os.PathLike[str] | None = None,
    include_unlabelled: bool = True,
    exclude_cases: Iterable[str] = (),
    only_cases: Iterable[str] | None = None,
    unlabelled_centre: str | Callable[[np.ndarray], np.ndarray] = "heuristic",
    progress: bool = False,
) -> CineLgeSlices:
    """All MyoPS cine/LGE ROI slices (see the module docstring).

    ``unlabelled_centre``: "heuristic" (default), "network" (the shipped ONNX localiser) or any
    callable on localiser batches; only used for cases without labels.
    """
    files = list_case_files(root, include_unlabelled)
    excluded = set(exclude_cases)
    wanted = set(only_cases) if only_cases is not None else None
    files = [f for f in files if f.case_id not in excluded and (wanted is None or f.case_id in wanted)]
    localiser: Callable[[np.ndarray], np.ndarray] | None
    if unlabelled_centre == "heuristic":
        localiser = None
    elif unlabelled_centre == "network":
        localiser = default_localiser() if any(not f.labelled for f in files) else None
    elif callable(unlabelled_centre):
        localiser = unlabelled_centre
    else:
        raise ValueError(f"unlabelled_centre must be 'heuristic', 'network' or a callable, not {unlabelled_centre!r}")
    it: Iterable[CaseFiles] = files
    if progress:
        from tqdm import tqdm

        it = tqdm(files, desc="MyoPS cases", unit="case")
    cine, lge, masks, labelled, ids, idx, sources, centres = [], [], [], [], [], [], {}, {}
    cine_raw, lge_raw = [], []
    for f in it:
        roi = load_case(f, localiser)
        n = len(roi.cine)
        cine.append(roi.cine)
        lge.append(roi.lge)
        masks.append(roi.mask if roi.mask is not None else np.zeros(roi.cine.shape, np.uint8))
        labelled += [roi.mask is not None] * n
        ids += [f.case_id] * n
        idx.append(np.arange(n))
        sources[f.case_id] = roi.centre_source
        centres[f.case_id] = roi.centre
        cine_raw.append(roi.cine_raw)
        lge_raw.append(roi.lge_raw)
    if not ids:
        raise FileNotFoundError(f"no MyoPS cine/LGE cases found in {myops_dir(root)}")
    return CineLgeSlices(np.concatenate(cine).astype(np.float32), np.concatenate(lge).astype(np.float32),
                         np.concatenate(masks), np.asarray(labelled, bool), ids, np.concatenate(idx), sources,
                         centres, np.concatenate(cine_raw), np.concatenate(lge_raw))
