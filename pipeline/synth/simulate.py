"""Mask simulator: 0-4 label masks (128x128 ROI, LV-centred, 1.25 mm pixels) by three strategies.

* ``synthetic``: cavity + myocardium sampled from the PCA shape model of the real development
  masks (``shapes.fit_shape_model``), then a synthetic lesion.
* ``hybrid``: a real development slice (its infarct/MVO reset to myocardium), then a synthetic lesion.
* ``fusion``: a real recipient slice takes the infarct/MVO pattern of a real donor slice chosen among
  the k nearest neighbours on shape descriptors (``shape_descriptor``); the pattern is transferred in
  (angle, transmural depth) wall coordinates, so it is aligned to and clipped by the recipient wall.

Synthetic lesion (``add_lesion``): a coronary territory (LAD/RCA/LCx) is drawn, the lesion's arc is
placed inside that territory's AHA sectors at the slice level, and the infarct grows from the
subendocardium (depth 0) outward up to a sampled transmurality, tapering towards the arc ends with a
smooth random boundary; MVO is a subendocardial core of the infarct.

Every sample i uses ``np.random.default_rng([seed, i])``: results depend on (config, seed, i) only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.synth import shapes as S

STRATEGIES = ("synthetic", "hybrid", "fusion")
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "simulate.yaml"


# ---------------------------------------------------------------------------------------------
# Configuration (documented in pipeline/configs/simulate.yaml)
# ---------------------------------------------------------------------------------------------
@dataclass
class ShapeConfig:
    n_angles: int = 64
    variance_kept: float = 0.95
    clip_sd: float = 2.0
    scale_range: tuple[float, float] = (0.95, 1.05)
    min_wall_px: float = 2.0
    level_probs: dict[str, float] | None = None  # None: level frequencies of the real slices
    real_centre_offsets: bool = True
    min_solidity: float = 0.93
    max_tries: int = 20


@dataclass
class InfarctConfig:
    probability: float = 1.0
    territory_probs: dict[str, float] = field(default_factory=lambda: {"LAD": 0.45, "RCA": 0.35, "LCx": 0.20})
    width_deg: tuple[float, float] = (60.0, 300.0)
    transmurality: tuple[float, float] = (0.4, 1.0)
    taper_power: float = 4.0
    boundary_noise: float = 0.15
    boundary_harmonics: int = 4
    spill_deg: float = 90.0
    min_pixels: int = 8
    extra_lesion_probability: float = 0.25
    extra_lesion_width: float = 0.4
    extra_lesion_gap_deg: tuple[float, float] = (5.0, 40.0)


@dataclass
class MvoConfig:
    probability: float = 0.38
    depth_fraction: tuple[float, float] = (0.2, 0.6)
    width_fraction: tuple[float, float] = (0.3, 0.6)
    min_transmurality: float = 0.5


@dataclass
class FusionConfig:
    k: int = 5
    descriptor_weights: dict[str, float] = field(default_factory=lambda: {
        "position": 1.0, "cavity_radius": 1.0, "lv_radius": 1.0, "wall_px": 1.0, "eccentricity": 0.5})
    depth_weight: float = 0.5
    angle_jitter_deg: float = 0.0
    exclude_same_case: bool = True


@dataclass
class SimConfig:
    seed: int = 0
    data_dir: str | None = None
    exclude_cases: list[str] = field(default_factory=list)
    rotation_deg: float = 0.0
    shape: ShapeConfig = field(default_factory=ShapeConfig)
    infarct: InfarctConfig = field(default_factory=InfarctConfig)
    mvo: MvoConfig = field(default_factory=MvoConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    render: dict[str, Any] = field(default_factory=dict)  # physics.RenderConfig fields


def _build(cls: type, data: dict[str, Any] | None) -> Any:
    data = dict(data or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        default = getattr(cls(), k)
        if dataclasses.is_dataclass(default):
            kwargs[k] = _build(type(default), v)
        elif isinstance(default, tuple) and v is not None:
            kwargs[k] = tuple(float(x) for x in v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


def load_config(path: str | Path | None = None) -> SimConfig:
    """Read the YAML config (default pipeline/configs/simulate.yaml); unknown keys are errors."""
    import yaml

    from pipeline.synth.physics import RenderConfig

    p = Path(path) if path else DEFAULT_CONFIG
    with open(p) as f:
        cfg = _build(SimConfig, yaml.safe_load(f) or {})
    RenderConfig.from_dict(cfg.render)  # validate the render section now, not at render time
    return cfg


def config_dict(cfg: SimConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------------------------------------
# Lesions
# ---------------------------------------------------------------------------------------------
@dataclass
class Lesion:
    territory: str | None = None
    centre_deg: float = float("nan")
    width_deg: float = 0.0
    transmurality: float = 0.0
    mvo: bool = False
    n_lesions: int = 1


def _angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    return np.mod(a - b + 180.0, 360.0) - 180.0


def _pick(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = sorted(probs)
    p = np.array([probs[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def add_lesion(mask: np.ndarray, rng: np.random.Generator, level: str, icfg: InfarctConfig,
               mcfg: MvoConfig, rotation_deg: float = 0.0,
               territory: str | None = None) -> tuple[np.ndarray, Lesion]:
    """Grow an infarct (and maybe MVO) in the myocardium of ``mask`` (labels 0-2); returns a copy."""
    out = np.asarray(mask).copy()
    out[out >= 3] = 2
    return _grow(out, rng, level, icfg, mcfg, rotation_deg, territory)


def _grow(out: np.ndarray, rng: np.random.Generator, level: str, icfg: InfarctConfig, mcfg: MvoConfig,
          rotation_deg: float, territory: str | None,
          beside: Lesion | None = None) -> tuple[np.ndarray, Lesion]:
    second = beside is not None
    idx, ang, depth = S.wall_coordinates(out, rotation_deg=rotation_deg)
    terr = territory or _pick(rng, icfg.territory_probs)
    start, arc = S.territory_arc(terr, level)
    width = min(rng.uniform(*icfg.width_deg) * (icfg.extra_lesion_width if second else 1.0),
                arc + 2 * icfg.spill_deg)
    # Arc centre such that the whole lesion arc stays within territory (+ spill).
    slack = arc + 2 * icfg.spill_deg - width
    centre = np.mod(start - icfg.spill_deg + width / 2 + rng.uniform(0, max(slack, 0.0)), 360.0)
    if beside is not None:  # satellite: next to the main lesion, separated by a gap
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        gap = rng.uniform(*icfg.extra_lesion_gap_deg)
        centre = np.mod(beside.centre_deg + side * (beside.width_deg / 2 + gap + width / 2), 360.0)
    t = rng.uniform(*icfg.transmurality)
    d = _angle_diff(ang, centre)
    u = np.abs(d) / (width / 2)
    th = np.radians(ang)
    h = np.arange(1, icfg.boundary_harmonics + 1)
    amp = rng.normal(0, 1, h.size) / h
    phase = rng.uniform(0, 2 * np.pi, h.size)
    noise = (amp[None] * np.cos(h[None] * th[:, None] + phase[None])).sum(axis=1) if h.size else 0.0
    limit = t * (1 - np.clip(u, 0, 1) ** icfg.taper_power) * (1 + icfg.boundary_noise * noise)
    limit = np.minimum(limit, t)  # the sampled transmurality is the lesion's maximum extent
    lesion = (u < 1) & (depth <= limit)
    info = Lesion(terr, float(centre), float(width), float(t))
    if lesion.sum() < icfg.min_pixels:
        return out, Lesion(n_lesions=0)
    if second:  # a satellite lesion (patchy infarct): same territory, no MVO of its own
        allowed = np.mod(ang - (start - icfg.spill_deg), 360.0) < arc + 2 * icfg.spill_deg
        lesion &= (out[idx[0], idx[1]] == 2) & allowed
        out[idx[0][lesion], idx[1][lesion]] = 3
        return out, (info if lesion.any() else Lesion(n_lesions=0))
    out[idx[0][lesion], idx[1][lesion]] = 3
    if t >= mcfg.min_transmurality and rng.uniform() < mcfg.probability:
        f = rng.uniform(*mcfg.depth_fraction)
        g = rng.uniform(*mcfg.width_fraction)
        core = lesion & (u < g) & (depth <= f * limit)
        if core.any():
            out[idx[0][core], idx[1][core]] = 4
            info.mvo = True
    if rng.uniform() < icfg.extra_lesion_probability:
        out, extra = _grow(out, rng, level, icfg, mcfg, rotation_deg, terr, beside=info)
        info.n_lesions += int(extra.territory is not None)
    return out, info


# ---------------------------------------------------------------------------------------------
# Cross-subject fusion
# ---------------------------------------------------------------------------------------------
DESCRIPTORS = ("position", "cavity_radius", "lv_radius", "wall_px", "eccentricity")


def shape_descriptor(mask: np.ndarray, position: float, n_angles: int = 64) -> np.ndarray:
    """[relative slice position, sqrt(cavity area), sqrt(LV area), mean wall px, epi radius CV]."""
    m = np.asarray(mask)
    endo, epi = S.radial_profiles(m, n_angles)
    return np.array([position, np.sqrt((m == 1).sum()), np.sqrt((m > 0).sum()),
                     float(np.mean(epi - endo)), float(np.std(epi) / max(np.mean(epi), 1e-6))])


def nearest_donors(query: np.ndarray, donors: np.ndarray, k: int, scale: np.ndarray,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k donors nearest to ``query`` (weighted Euclidean on descriptors / scale)."""
    w = np.ones(query.size) if weights is None else np.asarray(weights, float)
    d = np.sqrt((((donors - query) / scale) ** 2 * w).sum(axis=1))
    order = np.argsort(d, kind="stable")
    return order[:k]


def transfer_lesion(recipient: np.ndarray, donor: np.ndarray, depth_weight: float = 0.5,
                    angle_shift_deg: float = 0.0) -> np.ndarray:
    """Donor infarct/MVO mapped onto the recipient wall by nearest (angle, depth) wall coordinates."""
    from scipy.spatial import cKDTree

    out = np.asarray(recipient).copy()
    out[out >= 3] = 2
    ridx, rang, rdep = S.wall_coordinates(out)
    didx, dang, ddep = S.wall_coordinates(donor)
    if ridx.shape[1] == 0 or didx.shape[1] == 0:
        return out
    lab = np.asarray(donor)[didx[0], didx[1]]

    def pts(a: np.ndarray, dp: np.ndarray) -> np.ndarray:
        t = np.radians(a)
        return np.c_[np.cos(t), np.sin(t), depth_weight * dp]

    _, j = cKDTree(pts(dang, ddep)).query(pts(rang + angle_shift_deg, rdep))
    out[ridx[0], ridx[1]] = np.where(lab[j] >= 3, lab[j], 2)
    return out


# ---------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------
@dataclass
class Sample:
    mask: np.ndarray
    strategy: str
    level: str
    lesion: Lesion
    source: str = ""  # real case(s) used
    meta: dict[str, Any] = field(default_factory=dict)


class Simulator:
    """Holds the real bank and the models learned from it; ``sample(strategy, i)`` is deterministic."""

    def __init__(self, cfg: SimConfig, bank: S.RealBank):
        self.cfg = cfg
        self.bank = bank
        self._levels = bank.levels
        self._shape: S.ShapeModel | None = None
        self._desc: np.ndarray | None = None

    # Lazily fitted pieces (fusion needs descriptors, synthetic the shape model).
    @property
    def shape_model(self) -> S.ShapeModel:
        if self._shape is None:
            endo, epi = S.bank_profiles(self.bank, self.cfg.shape.n_angles)
            self._shape = S.fit_shape_model(endo, epi, self._levels, self.cfg.shape.variance_kept)
        return self._shape

    @property
    def descriptors(self) -> np.ndarray:
        if self._desc is None:
            self._desc = np.stack([shape_descriptor(m, float(t), self.cfg.shape.n_angles)
                                   for m, t in zip(self.bank.masks, self.bank.positions)])
        return self._desc

    def level_probs(self) -> dict[str, float]:
        if self.cfg.shape.level_probs:
            return dict(self.cfg.shape.level_probs)
        return {lv: self._levels.count(lv) / len(self._levels) for lv in S.LEVELS}

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([int(self.cfg.seed), int(i)])

    def sample(self, strategy: str, i: int) -> Sample:
        rng = self.rng(i)
        if strategy == "synthetic":
            return self._synthetic(rng)
        if strategy == "hybrid":
            return self._hybrid(rng)
        if strategy == "fusion":
            return self._fusion(rng)
        raise ValueError(f"strategy must be one of {STRATEGIES}")

    def _maybe_lesion(self, mask: np.ndarray, rng: np.random.Generator, level: str) -> tuple[np.ndarray, Lesion]:
        if rng.uniform() >= self.cfg.infarct.probability:
            out = mask.copy()
            out[out >= 3] = 2
            return out, Lesion(n_lesions=0)
        return add_lesion(mask, rng, level, self.cfg.infarct, self.cfg.mvo, self.cfg.rotation_deg)

    def _synthetic(self, rng: np.random.Generator) -> Sample:
        sc = self.cfg.shape
        level = _pick(rng, self.level_probs())
        model = self.shape_model
        if level not in model.levels:
            level = next(iter(model.levels))
        off = self.bank.offsets[rng.integers(len(self.bank))] if sc.real_centre_offsets else np.zeros(2)
        centre = (S.ROI // 2 + float(off[0]), S.ROI // 2 + float(off[1]))
        for _ in range(max(sc.max_tries, 1)):  # rejection: no concave (e.g. peanut-like) LVs
            endo, epi = model.sample(level, rng, sc.clip_sd, rng.uniform(*sc.scale_range), sc.min_wall_px)
            mask = S.mask_from_profiles(endo, epi, centre)
            if S.lv_solidity(mask) >= sc.min_solidity:
                break
        mask, lesion = self._maybe_lesion(mask, rng, level)
        return Sample(mask, "synthetic", level, lesion)

    def _hybrid(self, rng: np.random.Generator) -> Sample:
        j = int(rng.integers(len(self.bank)))
        level = self._levels[j]
        mask, lesion = self._maybe_lesion(self.bank.masks[j], rng, level)
        return Sample(mask, "hybrid", level, lesion, source=self.bank.case_ids[j], meta={"recipient": j})

    def donor_pool(self) -> np.ndarray:
        return np.nonzero((self.bank.masks >= 3).any(axis=(1, 2)))[0]

    def _fusion(self, rng: np.random.Generator) -> Sample:
        fc = self.cfg.fusion
        j = int(rng.integers(len(self.bank)))
        pool = self.donor_pool()
        if fc.exclude_same_case:
            pool = pool[[self.bank.case_ids[p] != self.bank.case_ids[j] for p in pool]]
        if pool.size == 0:
            raise ValueError("fusion needs real slices with infarct from another case")
        desc = self.descriptors
        scale = desc.std(axis=0) + 1e-6
        w = np.array([fc.descriptor_weights.get(n, 1.0) for n in DESCRIPTORS])
        near = pool[nearest_donors(desc[j], desc[pool], fc.k, scale, w)]
        donor = int(near[rng.integers(near.size)])
        shift = rng.uniform(-fc.angle_jitter_deg, fc.angle_jitter_deg) if fc.angle_jitter_deg else 0.0
        mask = transfer_lesion(self.bank.masks[j], self.bank.masks[donor], fc.depth_weight, shift)
        lesion = Lesion(mvo=bool((mask == 4).any()), n_lesions=int((mask >= 3).any()))
        return Sample(mask, "fusion", self._levels[j], lesion,
                      source=f"{self.bank.case_ids[j]}<-{self.bank.case_ids[donor]}",
                      meta={"recipient": j, "donor": donor, "neighbours": near.tolist()})


def simulate(sim: Simulator, strategy: str, n: int, progress: bool = False) -> list[Sample]:
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"simulate {strategy}", unit="mask")
    return [sim.sample(strategy, i) for i in it]


def save_samples(samples: list[Sample], out: str | Path, cfg: SimConfig, png: bool = False,
                 images: np.ndarray | None = None) -> Path:
    """Write ``masks.npz`` (masks (N,128,128) u8 [+ images (N,128,128) f32]) and ``samples.json``."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"masks": np.stack([s.mask for s in samples]).astype(np.uint8)}
    if images is not None:
        arrays["images"] = images.astype(np.float32)
    np.savez_compressed(out / "masks.npz", **arrays)
    meta = [{"i": i, "strategy": s.strategy, "level": s.level, "source": s.source,
             **dataclasses.asdict(s.lesion), **s.meta} for i, s in enumerate(samples)]
    doc = {"config": config_dict(cfg), "samples": meta}
    (out / "samples.json").write_text(json.dumps(doc, indent=1, default=float))
    if png:
        from PIL import Image

        (out / "png").mkdir(exist_ok=True)
        for i, m in enumerate(arrays["masks"]):
            Image.fromarray(m).save(out / "png" / f"mask_{i:05d}.png")
            if images is not None:
                Image.fromarray(_to_u8(images[i])).save(out / "png" / f"image_{i:05d}.png")
    return out / "masks.npz"


def _to_u8(x: np.ndarray) -> np.ndarray:
    import models.preprocess as pp

    return (np.clip(x / pp.CLIP_MAX, 0, 1) * 255).astype(np.uint8)
