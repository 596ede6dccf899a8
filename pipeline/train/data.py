"""Training batches from EMIDEC cases, built with the preprocessing contract of ``models``.

Per case (once): the raw slices, ``x = pp.normalize_intensity(images)`` over the whole stack of
full slices (the localiser's input, as at inference) and the ground-truth LV centre
``pp.lv_centre_from_mask(masks)``.

Segmenter batch: for each sampled case, ONE random spatial transform (rotation, flip, isotropic
and anisotropic scale, elastic, centre jitter) is applied to all its slices while cutting the
128x128 ROI from the raw slices (``pipeline.augment``: warp and crop in one resampling; without
augmentation this is exactly ``pp.crop_roi``), then the ROI stack is normalised with ``pp.normalize_intensity`` like at
inference (the statistics are per case ROI stack, which is why the whole case is warped), then
intensity augmentation, then ``slices_per_case`` slices are drawn (slices with infarct or
no-reflow are favoured with ``p_lesion_slice``).

Localiser batch: whole slices, warped with large translations and zoom (the LV sits at the
centre of every EMIDEC slice, the localiser must not learn a constant), intensity augmentation,
then ``pp.localiser_training_pair``.

Validation uses ``pp.preprocess_training_stack`` (ground-truth centre, no jitter) and
``pp.localiser_training_pair`` unchanged.

Batches are a pure function of (seed, epoch, batch index), so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras
import numpy as np
from scipy import ndimage

from models import preprocess as pp
from pipeline.augment import (
    AugmentConfig,
    augment_intensity,
    elastic_displacements,
    random_matrices,
    sample_coordinates,
    warp,
)
from pipeline.datasets.emidec import EmidecCase
from pipeline.datasets.myops import MyopsCase
from pipeline.train.losses import AMBIGUOUS_LESION
from pipeline.train.synthetic import SyntheticPool, n_synthetic


@dataclass
class PreparedCase:
    case_id: str
    images: np.ndarray  # (n, H, W) raw slices as read (the segmenter path crops these)
    x: np.ndarray  # (n, H, W) float32, normalize_intensity over the whole stack (localiser)
    masks: np.ndarray  # (n, H, W) uint8
    centre: tuple[float, float]  # ground-truth LV centre (row, col)
    lesion_slices: np.ndarray  # indices of slices with label 3 or 4 (or AMBIGUOUS_LESION)
    source: str = "emidec"  # "emidec" (centred 256x256 PNG crops) | "myops" (full field of view)


def _prepared(case_id: str, images: np.ndarray, masks: np.ndarray, source: str) -> PreparedCase:
    x = pp.normalize_intensity(images)
    masks = masks.astype(np.uint8)
    centre = pp.lv_centre_from_mask(masks) or ((x.shape[1] - 1) / 2.0, (x.shape[2] - 1) / 2.0)
    lesion = np.flatnonzero((masks >= 3).reshape(masks.shape[0], -1).any(axis=1))
    return PreparedCase(case_id, images, x, masks, centre, lesion, source)


def prepare_case(case: EmidecCase) -> PreparedCase:
    return _prepared(case.case_id, case.images, case.masks, "emidec")


def prepare_myops_case(case: MyopsCase, image: str = "LGE", root: str | None = None
                       ) -> PreparedCase:
    """A MyoPS volume on the inference grid: in-plane resampled to ``TARGET_SPACING_MM`` exactly
    as ``pp.preprocess_volume`` does, labels by nearest neighbour. Scar becomes
    ``AMBIGUOUS_LESION`` (MyoPS has no MVO class, so its scar may hold no-reflow).

    ``image="C0"`` takes the co-registered bSSFP (cine-type) image of the same patient instead
    of the LGE (same labels): extra contrast variety for the localiser.
    """
    vol = case.volume
    if image != "LGE":
        from pipeline.datasets.myops import read_nifti_volume
        from pipeline.datasets.paths import myops_dir

        path = next(iter(sorted(myops_dir(root).glob(f"{case.case_id}_{image}.nii*"))), None)
        if path is None:
            raise FileNotFoundError(f"{case.case_id}: no {image} image in {myops_dir(root)}")
        vol = read_nifti_volume(path)
        if vol.pixels.shape != case.labels.shape:
            raise ValueError(f"{case.case_id}: {image} grid {vol.pixels.shape} != labels")
    resampled, info = pp.resample_inplane(vol)
    labels = pp.resample_labels_inplane(case.labels, info)
    labels = np.where(labels == 3, AMBIGUOUS_LESION, labels).astype(np.uint8)
    return _prepared(f"{case.case_id}" + ("" if image == "LGE" else f"_{image}"), resampled,
                     labels, "myops")


def contract_centre(centre: tuple[float, float]) -> np.ndarray:
    """Integer centre exactly as ``pp.crop_roi`` rounds it (floor(c + 0.5))."""
    return np.floor(np.asarray(centre, dtype=np.float64) + 0.5)


def roi_stack(case: PreparedCase, rng: np.random.Generator | None, cfg: AugmentConfig,
              size: int = pp.ROI_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """All slices of one case -> (x (n, size, size) float32 ROI-normalised, y (n, size, size))."""
    n = case.x.shape[0]
    centre = contract_centre(case.centre)
    if rng is None:
        coords = sample_coordinates(np.repeat(centre[None], n, 0), (size, size))
        x, y = warp(case.images, case.masks, coords)
        return pp.normalize_intensity(x), y
    mat = np.repeat(random_matrices(rng, 1, cfg), n, axis=0)
    shift = np.repeat(rng.uniform(-cfg.max_shift_px, cfg.max_shift_px, (1, 2)), n, axis=0)
    disp = elastic_displacements(rng, 1, (size, size), cfg)
    if disp is not None:
        disp = np.repeat(disp, n, axis=0)
    coords = sample_coordinates(np.repeat(centre[None], n, 0), (size, size), mat, shift, disp)
    x, y = warp(case.images, case.masks, coords)
    x = augment_intensity(pp.normalize_intensity(x), rng, cfg)
    return x, y


class SegmenterBatches(keras.utils.PyDataset):
    """``steps_per_epoch`` augmented batches of (x (B,128,128,1), y (B,128,128)) per epoch."""

    def __init__(self, cases: list[PreparedCase], batch_size: int, steps_per_epoch: int,
                 cfg: AugmentConfig, seed: int = 0, slices_per_case: int = 4,
                 p_lesion_slice: float = 0.5, synthetic: SyntheticPool | None = None,
                 synthetic_fraction: float = 0.0, myops_share: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if not cases:
            raise ValueError("no training cases")
        self.case_p = case_probabilities(cases, myops_share)
        self.cases, self.batch_size, self.steps = cases, int(batch_size), int(steps_per_epoch)
        self.cfg, self.seed = cfg, int(seed)
        self.slices_per_case = max(1, int(slices_per_case))
        self.p_lesion_slice = float(p_lesion_slice)
        self.synthetic = synthetic
        self.n_synthetic = n_synthetic(self.batch_size, synthetic_fraction) if synthetic else 0
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, int(idx)])
        xs, ys = [], []
        n_real = self.batch_size - self.n_synthetic
        while sum(len(x) for x in xs) < n_real:
            case = self.cases[self._draw_case(rng)]
            x, y = roi_stack(case, rng, self.cfg)
            k = min(self.slices_per_case, n_real - sum(len(a) for a in xs), len(x))
            pick = self._pick_slices(case, rng, k)
            xs.append(x[pick])
            ys.append(y[pick])
        if self.synthetic is not None and self.n_synthetic:
            # Own generator stream: the real part of the batch is identical with and without
            # synthetic data, so arms of the experiment differ only by what is added.
            x, y = self.synthetic.draw(np.random.default_rng([self.seed, self.epoch, int(idx), 7]),
                                       self.n_synthetic, self.cfg)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs)[..., None].astype(np.float32), np.concatenate(ys)

    def _draw_case(self, rng: np.random.Generator) -> int:
        if self.case_p is None:
            return int(rng.integers(len(self.cases)))
        return int(rng.choice(len(self.cases), p=self.case_p))

    def _pick_slices(self, case: PreparedCase, rng: np.random.Generator, k: int) -> np.ndarray:
        n = case.x.shape[0]
        if case.lesion_slices.size and rng.random() < self.p_lesion_slice:
            first = int(rng.choice(case.lesion_slices))
        else:
            first = int(rng.integers(n))
        rest = [i for i in rng.permutation(n) if i != first][: k - 1]
        return np.array([first, *rest], dtype=int)


def case_probabilities(cases: list[PreparedCase], myops_share: float | None
                       ) -> np.ndarray | None:
    """Per-case draw probabilities giving MyoPS (real scanner) cases ``myops_share`` of the
    draws, uniform within each source; None (uniform over all cases) when not set or when
    one source is absent."""
    if myops_share is None:
        return None
    is_myops = np.array([c.source == "myops" for c in cases])
    if is_myops.all() or not is_myops.any():
        return None
    p = np.where(is_myops, myops_share / is_myops.sum(), (1 - myops_share) / (~is_myops).sum())
    return p / p.sum()


LOCALISER_AUGMENT = AugmentConfig(scale_range=(0.7, 1.4), max_shift_px=60.0, p_elastic=0.2,
                                  elastic_alpha_px=6.0)
P_CANVAS = 0.75  # share of EMIDEC localiser samples placed on a simulated full field of view


def on_canvas(x: np.ndarray, masks: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Place normalised EMIDEC slices (n, H, W) (LV always at the centre, tight field of view)
    off-centre on a larger simulated field of view, as a scanner's full-FOV image looks.

    The canvas is 1.15-1.6x the slice; the margin is filled by reflecting the slice's own outer
    band (at most 56 px, which holds body wall, never the heart) so the surroundings look like
    anatomy, then an elliptical body outline with air and noise outside is applied.
    """
    n, h, w = x.shape
    side = int(rng.integers(int(1.15 * max(h, w)), int(1.6 * max(h, w)) + 1))
    pads = []
    for dim in (h, w):
        extra = max(side - dim, 0)
        before = int(rng.integers(0, extra + 1))
        pads.append((before, extra - before))
    limit = 56
    big = x
    # reflect at most `limit` px at a time (larger reflections would mirror the heart); edge
    # padding beyond that is faded out by the body outline below
    first = tuple((min(a, limit), min(b, limit)) for a, b in pads)
    big = np.pad(big, ((0, 0), *first), mode="reflect")
    rest = tuple((a - fa, b - fb) for (a, b), (fa, fb) in zip(pads, first))
    big = np.pad(big, ((0, 0), *rest), mode="edge")
    m = np.pad(masks, ((0, 0), *pads), mode="constant")
    H, W = big.shape[1:]
    rr, cc = np.mgrid[0:H, 0:W].astype(np.float32)
    cr = H / 2 + rng.uniform(-0.08, 0.08) * H
    ccn = W / 2 + rng.uniform(-0.08, 0.08) * W
    ar, ac = rng.uniform(0.36, 0.5) * H, rng.uniform(0.42, 0.5) * W
    d = np.sqrt(((rr - cr) / ar) ** 2 + ((cc - ccn) / ac) ** 2)
    body = np.clip((1.08 - d) / 0.08, 0.0, 1.0)
    # never cut into the heart: the body always contains the LV
    lv = m.any(axis=0)
    body = np.maximum(body, ndimage.binary_dilation(lv, iterations=40).astype(np.float32))
    noise = np.abs(rng.normal(0.0, rng.uniform(0.01, 0.05), big.shape)).astype(np.float32)
    out = big * body[None] + noise * (1.0 - body[None])
    return out.astype(np.float32), m


def localiser_stack(case: PreparedCase, rng: np.random.Generator | None,
                    cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """All slices of one case -> localiser (x, y), each (n, 128, 128, 1)."""
    if rng is None:
        return pp.localiser_training_pair(case.x, case.masks)
    src_x, src_m = case.x, case.masks
    if case.source == "emidec" and rng.random() < P_CANVAS:
        src_x, src_m = on_canvas(src_x, src_m, rng)
    n, h, w = src_x.shape
    centre = np.repeat(np.array([[h // 2, w // 2]], float), n, 0)
    mat = np.repeat(random_matrices(rng, 1, cfg), n, axis=0)
    shift = np.repeat(rng.uniform(-cfg.max_shift_px, cfg.max_shift_px, (1, 2)), n, axis=0)
    disp = elastic_displacements(rng, 1, (h, w), cfg)
    if disp is not None:
        disp = np.repeat(disp, n, axis=0)
    x, y = warp(src_x, src_m, sample_coordinates(centre, (h, w), mat, shift, disp))
    x = augment_intensity(x, rng, cfg)
    return pp.localiser_training_pair(x, y)


class LocaliserBatches(SegmenterBatches):
    """Augmented whole-slice batches for the LV localiser."""

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, int(idx), 1])
        xs, ys = [], []
        while sum(len(x) for x in xs) < self.batch_size:
            case = self.cases[self._draw_case(rng)]
            k = min(self.slices_per_case, self.batch_size - sum(len(a) for a in xs),
                    case.x.shape[0])
            pick = rng.permutation(case.x.shape[0])[:k]
            sub = replace(case, images=case.images[pick], x=case.x[pick],
                          masks=case.masks[pick])
            x, y = localiser_stack(sub, rng, self.cfg)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def segmenter_validation(cases: list[PreparedCase]) -> tuple[np.ndarray, np.ndarray]:
    """All validation slices, ROI around the ground-truth centre, no augmentation (the contract)."""
    xs, ys = [], []
    for c in cases:
        x, y, _ = pp.preprocess_training_stack(c.images, c.masks, centre=c.centre)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def localiser_validation(cases: list[PreparedCase]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(pp.localiser_training_pair(c.x, c.masks) for c in cases))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def class_frequencies(cases: list[PreparedCase], n_classes: int = pp.N_CLASSES) -> np.ndarray:
    """Label frequencies inside the (un-augmented) ROIs of ``cases``."""
    counts = np.zeros(n_classes, dtype=np.float64)
    for c in cases:
        _, y = roi_stack(c, None, AugmentConfig())
        counts += np.bincount(y.ravel(), minlength=n_classes)[:n_classes]
    return counts / max(counts.sum(), 1.0)


def class_weights_from_frequencies(freq: np.ndarray, power: float = 0.5,
                                   max_ratio: float = 20.0) -> np.ndarray:
    """w_c proportional to freq_c^-power, capped at ``max_ratio`` x the smallest weight, scaled so
    that the frequency-weighted mean weight is 1 (the cross-entropy keeps its usual magnitude)."""
    f = np.maximum(np.asarray(freq, dtype=np.float64), 1e-6)
    w = f ** (-power)
    w = np.minimum(w, w.min() * max_ratio)
    return w / float((w * f).sum())
