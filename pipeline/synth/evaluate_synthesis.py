"""`evaluate-synthesis`: how real do synthetic LGE images look to one of our segmenters (``--weights``)?

Reference: the 128x128 ROI slices (``pp.preprocess_training_stack``, ground-truth LV centre) of
held-back EMIDEC cases, by default the validation cases of fold 0 (the generators of the
experiment never see them). For each synthetic set (images + the masks they were made from):

* KID (mean ± std over subsets) and Fréchet distance to the reference, in the feature space of
  ``pipeline.synth.features`` (segmenter bottleneck, global-average-pooled). The floor is the
  reference split into two random halves (A vs B). Fréchet distance is biased by sample size, so
  every set is also compared like-for-like with the floor: |A| of its images vs half B.
* FCN-score: pooled per-class Dice of the segmenter (raw argmax, no anatomical post-processing) on
  the synthetic images against their conditioning masks, beside its Dice on the reference images
  against their ground truth.
* Paired PSNR / SSIM where a real image of the same slice exists: ``--paired`` files, the physics
  renderer on the reference masks (always) and pix2pix on the reference masks (``--pix2pix``).

Outputs: ``synthesis.json`` (everything), ``synthesis.md`` (tables + notes) and ``grid.png``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import models.preprocess as pp
from pipeline.synth import image_metrics as M

log = logging.getLogger(__name__)

Features = Callable[[np.ndarray], np.ndarray]  # (n, H, W) images -> (n, d)
Segment = Callable[[np.ndarray], np.ndarray]  # (n, H, W, 1) images -> (n, H, W) labels
GeneratorLoader = Callable[[Path], Callable[[np.ndarray], np.ndarray]]

SEED_FID = 198.15  # the seed project's FID (ImageNet Inception features): not comparable
CLASS_LABELS = {"1": "cavity", "2": "myo", "3": "infarct", "4": "MVO"}
GRID_COLUMNS = 6


@dataclass
class ImageSet:
    name: str
    images: np.ndarray  # (n, 128, 128) float32, normalised like segmenter input
    masks: np.ndarray  # (n, 128, 128) uint8 0-4 (the conditioning masks)
    real: np.ndarray | None = None  # (n, 128, 128) the real image of the same slice (paired sets)
    source: str = ""
    kind: str = "synthetic"  # synthetic | paired | reference-masks (generated from the reference masks)
    meta: dict[str, Any] = field(default_factory=dict)
    n_total: int = 0  # before --max-images


@dataclass
class RealReference:
    images: np.ndarray  # (n, 128, 128) float32
    masks: np.ndarray  # (n, 128, 128) uint8
    slice_case: list[str]
    case_ids: list[str]
    description: str = ""
    n_total: int = 0


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def parse_named(spec: str) -> tuple[str, Path]:
    """'NAME=path' -> (NAME, path); a bare path is named after its file (or folder for pairs.npz)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name.strip():
            raise ValueError(f"empty set name in {spec!r}")
        return name.strip(), Path(path)
    p = Path(spec)
    return (p.parent.name if p.suffix == ".npz" else p.name) or str(p), p


def _npz_path(path: Path) -> Path:
    if path.is_dir():
        for name in ("pairs.npz", "masks.npz"):  # `render` writes pairs.npz, `simulate --render` masks.npz
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"no pairs.npz or masks.npz in {path}")
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def load_image_set(name: str, path: Path | str, paired: bool = False) -> ImageSet:
    """An ``ImageSet`` from a pairs file (``images`` + ``masks`` [+ ``real`` when ``paired``])."""
    p = _npz_path(Path(path))
    with np.load(p) as z:
        keys = set(z.files)
        need = {"images", "masks"} | ({"real"} if paired else set())
        if need - keys:
            raise ValueError(f"{p}: missing arrays {sorted(need - keys)} (has {sorted(keys)})")
        images = np.asarray(z["images"], np.float32)
        masks = np.asarray(z["masks"]).astype(np.uint8)
        real = np.asarray(z["real"], np.float32) if paired else None
    size = (pp.ROI_SIZE, pp.ROI_SIZE)
    if images.ndim != 3 or images.shape[1:] != size or masks.shape != images.shape:
        raise ValueError(f"{p}: images {images.shape} / masks {masks.shape} must both be (n, {size[0]}, {size[1]})")
    if real is not None and real.shape != images.shape:
        raise ValueError(f"{p}: real {real.shape} != images {images.shape}")
    if masks.max(initial=0) > 4:
        raise ValueError(f"{p}: mask labels outside 0..4")
    meta: dict[str, Any] = {}
    side = p.with_suffix(".json")
    if side.exists():
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError:
            log.warning("%s is not JSON; ignored", side)
    return ImageSet(name, images, masks, real, str(p), "paired" if paired else "synthetic", meta, len(images))


def reference_cases(fold: int | None, cases: Sequence[str] | None, folds_file: Path | None) -> tuple[list[str], str]:
    """(case ids, description): explicit ``cases``, else the validation cases of ``fold`` (default 0)."""
    if cases:
        return list(cases), f"EMIDEC cases {', '.join(cases)}"
    from pipeline.datasets import folds as F

    k = 0 if fold is None else fold
    path = folds_file or F.DEFAULT_FOLDS_FILE
    _, val = F.split(F.load_folds(path), k)
    return val, f"EMIDEC fold {k} validation cases ({Path(path).name})"


def load_real_reference(case_ids: Sequence[str], data_dir: str | Path | None = None,
                        description: str = "", progress: bool = True) -> RealReference:
    """128² ROI slices of the cases: ground-truth LV centre, normalised over each case's ROI stack."""
    from pipeline.datasets import emidec

    images, masks, owner = emidec.load_roi_slices(list(case_ids), data_dir, progress)
    return RealReference(images, masks, owner, list(case_ids), description, len(images))


def subsample_indices(n: int, max_images: int | None, rng: np.random.Generator) -> np.ndarray:
    """All indices, or a sorted random ``max_images`` of them."""
    if max_images is None or n <= max_images:
        return np.arange(n)
    return np.sort(rng.choice(n, max_images, replace=False))


def cap_reference(ref: RealReference, max_images: int | None, rng: np.random.Generator) -> RealReference:
    idx = subsample_indices(len(ref.images), max_images, rng)
    return RealReference(ref.images[idx], ref.masks[idx], [ref.slice_case[i] for i in idx], ref.case_ids,
                         ref.description, ref.n_total)


def cap_set(s: ImageSet, max_images: int | None, rng: np.random.Generator) -> ImageSet:
    idx = subsample_indices(len(s.images), max_images, rng)
    return ImageSet(s.name, s.images[idx], s.masks[idx], None if s.real is None else s.real[idx],
                    s.source, s.kind, s.meta, s.n_total or len(s.images))


# --------------------------------------------------------------------------------------------
# Sets generated from the reference masks (always paired with the reference images)
# --------------------------------------------------------------------------------------------
def physics_set(ref: RealReference, seed: int, progress: bool = True) -> ImageSet:
    """The physics renderer (``physics.render``) on each reference mask; image i uses rng([seed, i, 2])."""
    from tqdm import tqdm

    from pipeline.synth import physics

    imgs = np.stack([physics.render(m, np.random.default_rng([int(seed), i, 2]))[0]
                     for i, m in enumerate(tqdm(ref.masks, desc="physics", unit="image",
                                                disable=not progress, leave=False))])
    return ImageSet("physics(real masks)", imgs.astype(np.float32), ref.masks, ref.images,
                    "pipeline.synth.physics.render, default RenderConfig", "reference-masks",
                    {"seed": int(seed)}, len(imgs))


def generator_set(name: str, generator: Callable[[np.ndarray], np.ndarray], ref: RealReference,
                  source: str) -> ImageSet:
    """A masks -> images generator (e.g. pix2pix) run on the reference masks."""
    imgs = np.asarray(generator(ref.masks), np.float32)
    if imgs.shape != ref.masks.shape:
        raise ValueError(f"{name}: generator returned {imgs.shape}, expected {ref.masks.shape}")
    return ImageSet(name, imgs, ref.masks, ref.images, source, "reference-masks", {}, len(imgs))


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def kid_subset(n_a: int, n_b: int, requested: int) -> int:
    """Subset size for KID: at most half the smaller set, so that the subsets differ and the std means something."""
    return max(2, min(requested, min(n_a, n_b) // 2))


def _kid_fd(fa: np.ndarray, fb: np.ndarray, n_subsets: int, subset_size: int, seed: int) -> dict[str, float | int]:
    m = kid_subset(len(fa), len(fb), subset_size)
    mean, std, used = M.kid(fa, fb, n_subsets=n_subsets, subset_size=m, seed=seed)
    return {"n_a": len(fa), "n_b": len(fb), "kid_mean": mean, "kid_std": std, "kid_subset_size": used,
            "fd": M.frechet_distance_features(fa, fb)}


def _segment_all(segment: Segment, images: np.ndarray, desc: str, progress: bool, chunk: int = 64) -> np.ndarray:
    from tqdm import tqdm

    out = [np.asarray(segment(images[i : i + chunk, ..., None].astype(np.float32))).astype(np.uint8)
           for i in tqdm(range(0, len(images), chunk), desc=desc, unit="chunk", disable=not progress, leave=False)]
    return np.concatenate(out) if out else np.zeros(images.shape, np.uint8)


def evaluate_sets(ref: RealReference, sets: Sequence[ImageSet], features: Features, segment: Segment,
                  seed: int = 0, kid_subsets: int = 100, kid_subset_size: int = 1000,
                  progress: bool = True) -> dict[str, Any]:
    """All numbers for the reference, its half/half floor and every set (JSON-ready apart from NaN/inf)."""
    if len(ref.images) < 4:
        raise ValueError(f"the real reference has {len(ref.images)} slices; need at least 4")
    rng = np.random.default_rng([int(seed), 7])
    f_ref = features(ref.images)
    perm = rng.permutation(len(f_ref))
    half_a, half_b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    baseline = _kid_fd(f_ref[half_a], f_ref[half_b], kid_subsets, kid_subset_size, seed)
    reference = {"n": len(ref.images), "n_total": ref.n_total, "cases": ref.case_ids, "description": ref.description,
                 "fcn": M.dice_per_class(_segment_all(segment, ref.images, "segment real", progress), ref.masks)}
    rows = []
    for s in sets:
        t = time.perf_counter()
        f = features(s.images)
        row: dict[str, Any] = {"name": s.name, "kind": s.kind, "source": s.source, "n": len(s.images),
                               "n_total": s.n_total or len(s.images), "meta": s.meta}
        if len(f) < 4:
            raise ValueError(f"set {s.name} has {len(f)} images; need at least 4")
        row.update(_kid_fd(f, f_ref, kid_subsets, kid_subset_size, seed))
        # like-for-like with the floor: |A| images of this set vs half B
        pick = rng.choice(len(f), min(len(half_a), len(f)), replace=False)
        row["matched"] = _kid_fd(f[pick], f_ref[half_b], kid_subsets, kid_subset_size, seed)
        row["fcn"] = M.dice_per_class(_segment_all(segment, s.images, f"segment {s.name}", progress), s.masks)
        row["paired"] = M.paired_similarity(s.images, s.real) if s.real is not None else None
        row["seconds"] = round(time.perf_counter() - t, 2)
        rows.append(row)
        log.info("%s: n=%d KID %.4f FD %.2f FCN %.3f", s.name, row["n"], row["kid_mean"], row["fd"], row["fcn"]["mean"])
    return {"reference": reference, "baseline": {"name": "real A vs real B", **baseline}, "sets": rows}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None  # NaN (undefined Dice) / inf (identical images)
    return x


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def _kid_cell(r: dict[str, Any]) -> str:
    return f"{100 * r['kid_mean']:.2f} ± {100 * r['kid_std']:.2f}"


def _fcn_cells(fcn: dict[str, float] | None) -> list[str]:
    if fcn is None:
        return ["—"] * 5
    return [_f(fcn["mean"])] + [_f(fcn[c]) for c in CLASS_LABELS]


def _paired_cells(p: dict[str, float] | None) -> list[str]:
    if not p:
        return ["—", "—"]
    return [f"{_f(p['psnr_mean'], '.2f')} ± {_f(p['psnr_sd'], '.2f')}", f"{_f(p['ssim_mean'])} ± {_f(p['ssim_sd'])}"]


def write_markdown(result: dict[str, Any], path: Path) -> Path:
    meta, ref, base = result["meta"], result["reference"], result["baseline"]
    head = ["set", "n", "KID×100 ± sd", "FD", "FCN mean Dice", *(f"Dice {v}" for v in CLASS_LABELS.values()),
            "PSNR (dB)", "SSIM"]
    lines = [
        "# Synthetic image quality (`lgenode pipeline evaluate-synthesis`)", "",
        f"Reference: {ref['description']}: {ref['n']} ROI slices"
        + (f" (random {ref['n']} of {ref['n_total']})" if ref["n"] != ref["n_total"] else "") + ".",
        (f"Features: `{meta['features']['layer']}` of `{meta['features']['model']}` "
        f"({'×'.join(map(str, meta['features']['feature_map_shape']))}, global-average-pooled → "
        f"{meta['features']['dim']}-d). FCN-score segmenter: `{meta['segmenter']}` ({meta['runtime']})."), "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
        "| real (vs ground truth) | " + " | ".join([str(ref["n"]), "—", "—", *_fcn_cells(ref["fcn"]), "—", "—"]) + " |",
        f"| real half A vs half B (floor) | {base['n_a']}/{base['n_b']} | {_kid_cell(base)} | {_f(base['fd'], '.2f')} | "
        + " | ".join(["—"] * 7) + " |",
    ]
    for r in result["sets"]:
        n = str(r["n"]) + (f" of {r['n_total']}" if r["n"] != r["n_total"] else "")
        lines.append("| " + " | ".join([r["name"], n, _kid_cell(r), _f(r["fd"], ".2f"), *_fcn_cells(r["fcn"]),
                                          *_paired_cells(r["paired"])]) + " |")
    lines += [
        "", (f"Like-for-like with the floor (Fréchet distance depends on sample size): {base['n_a']} images of each "
        f"set vs real half B ({base['n_b']})."), "",
        "| set | n vs n | KID×100 ± sd | FD |", "|---|---|---|---|",
        f"| real half A (floor) | {base['n_a']} vs {base['n_b']} | {_kid_cell(base)} | {_f(base['fd'], '.2f')} |",
    ]
    for r in result["sets"]:
        m = r["matched"]
        lines.append(f"| {r['name']} | {m['n_a']} vs {m['n_b']} | {_kid_cell(m)} | {_f(m['fd'], '.2f')} |")
    kid = meta["kid"]
    lines += [
        "", "Notes:",
        (f"* KID: unbiased MMD² with the cubic polynomial kernel (x·y/d + 1)³ (Bińkowski et al. 2018), mean ± std "
        f"over {kid['n_subsets']} random subsets of min({kid['subset_size']}, half the smaller set) per side; "
        "×100 in the table. Single values can be slightly negative (unbiased estimator)."),
        "* FD: Fréchet distance between Gaussian fits of the same features (the FID formula, not FID).",
        ("* **FID, IS and LPIPS are not computed**: they need ImageNet network weights that no installable package "
        "ships here (they download them at run time). The numbers above live in our own segmenter's feature space "
        f"and are **not comparable with the seed's FID {SEED_FID}**."),
        ("* FCN-score: pooled per-class Dice of the segmenter (raw argmax, no post-processing) on the "
        "images against the masks they were generated from; the first row is the same segmenter on the real "
        "reference slices against their ground truth. n/a: class absent from both masks and predictions."),
        ("* PSNR/SSIM (scikit-image, images clipped to [0, 1], data range 1) only where a real image of the same "
        "slice exists: sets generated from the reference masks, and `--paired` files."),
        f"* Seed {meta['seed']}; max images per set: {meta['max_images'] or 'all'}; grid: `grid.png`.",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _pick(masks: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n indices, preferring images with infarct/MVO (the classes the experiment is about)."""
    lesion = np.flatnonzero((masks >= 3).any(axis=(1, 2)))
    other = np.setdiff1d(np.arange(len(masks)), lesion)
    first = rng.permutation(lesion)[:n]
    rest = rng.permutation(other)[: n - len(first)]
    return np.sort(np.concatenate([first, rest]).astype(int))


def write_grid(ref: RealReference, sets: Sequence[ImageSet], path: Path, seed: int = 0,
               n_cols: int = GRID_COLUMNS) -> Path:
    """Rows: real images with their mask contours, then each set's images with their mask contours.

    Sets made from the reference masks show the same slices as the real row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.overlay import COLOURS

    rng = np.random.default_rng([int(seed), 11])
    real_idx = _pick(ref.masks, n_cols, rng)
    rows: list[tuple[str, np.ndarray, np.ndarray]] = [("real", ref.images[real_idx], ref.masks[real_idx])]
    for s in sets:
        idx = real_idx if s.kind == "reference-masks" else _pick(s.masks, n_cols, rng)
        rows.append((s.name, s.images[idx], s.masks[idx]))
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.8 * n_cols, 1.9 * len(rows)), squeeze=False)
    for i, (name, imgs, msks) in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(imgs):
                ax.axis("off")
                continue
            ax.imshow(np.clip(imgs[j], 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            for c, rgb in COLOURS.items():
                if (msks[j] == c).any():
                    ax.contour(msks[j] == c, levels=[0.5], colors=[np.array(rgb) / 255.0], linewidths=0.6)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("contours: cavity gold, myocardium blue, infarct red, MVO green", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_outputs(result: dict[str, Any], ref: RealReference, sets: Sequence[ImageSet], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js = out / "synthesis.json"
    js.write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    return {"json": js, "md": write_markdown(result, out / "synthesis.md"),
            "grid": write_grid(ref, sets, out / "grid.png", seed=int(result["meta"]["seed"]))}


# --------------------------------------------------------------------------------------------
# Whole run
# --------------------------------------------------------------------------------------------
def resolve_runtime(weights: Path, runtime: str, stem: str = "segmenter") -> str:
    """'auto' -> onnx when ``<stem>.onnx`` exists, else keras."""
    if runtime == "auto":
        return "onnx" if (weights / f"{stem}.onnx").exists() else "keras"
    return runtime


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("numpy", "scipy", "scikit-image", "keras", "onnxruntime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run(out: Path, *, reference: RealReference, synthetic: Sequence[ImageSet] = (), weights: Path,
        runtime: str = "auto", pix2pix: Path | None = None, pix2pix_loader: GeneratorLoader | None = None,
        physics: bool = True, max_images: int | None = None, seed: int = 0, kid_subsets: int = 100,
        kid_subset_size: int = 1000, feature_layer: str | None = None, features: Features | None = None,
        segment: Segment | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``synthetic`` sets (plus physics / pix2pix on the reference masks) and write the outputs.

    ``features`` / ``segment`` default to the extractor and segmenter of ``weights``.
    ``pix2pix_loader`` defaults to ``pipeline.synth.pix2pix.load_generator`` (imported only when
    ``pix2pix`` is given); tests inject a fake one.
    """
    from pipeline.synth.features import BOTTLENECK_LAYER, load_feature_extractor

    t0 = time.perf_counter()
    weights = Path(weights)
    rng = np.random.default_rng([int(seed), 3])
    ref = cap_reference(reference, max_images, rng)
    sets = [cap_set(s, max_images, rng) for s in synthetic]
    stem = "segmenter"
    if (weights / "model.json").exists():
        from models.segment import read_model_info

        stem = read_model_info(weights).segmenter
    described: dict[str, Any] = {"layer": feature_layer or "injected", "feature_map_shape": [], "dim": None,
                                 "pooling": "injected", "model": "injected"}
    if features is None:
        fx = load_feature_extractor(weights, feature_layer or BOTTLENECK_LAYER)
        described = fx.describe()

        def features(images: np.ndarray) -> np.ndarray:
            return fx(images, progress=progress, desc="features")
    rt = resolve_runtime(weights, runtime, stem)
    if segment is None:
        from models.runtime import Segmenter

        segment = Segmenter.from_dir(weights, rt, segmenter=stem, localiser=None).predict_labels  # type: ignore[arg-type]
    if physics:
        sets.append(physics_set(ref, seed, progress))
    if pix2pix is not None:
        if pix2pix_loader is None:
            from pipeline.synth.pix2pix import load_generator as pix2pix_loader
        sets.append(generator_set("pix2pix(real masks)", pix2pix_loader(Path(pix2pix)), ref, str(pix2pix)))

    result = evaluate_sets(ref, sets, features, segment, seed=seed, kid_subsets=kid_subsets,
                           kid_subset_size=kid_subset_size, progress=progress)
    result["meta"] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": int(seed), "max_images": max_images,
        "features": described, "segmenter": str(weights / stem), "runtime": rt,
        "kid": {"n_subsets": kid_subsets, "subset_size": kid_subset_size,
                "kernel": "(x.y/d + 1)^3", "estimator": "unbiased MMD^2"},
        "fcn": {"postprocess": False, "dice": "pooled over images, classes 1-4, mean over defined classes"},
        "paired": {"clip": [0.0, 1.0], "data_range": 1.0, "psnr_ssim": "skimage.metrics"},
        "physics_render_seed": [int(seed), "i", 2] if physics else None,
        "not_computed": f"FID/IS/LPIPS (ImageNet weights unavailable); not comparable with the seed's FID {SEED_FID}",
        "versions": _versions(), "seconds": None,
    }
    result["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    result["outputs"] = {k: str(v) for k, v in write_outputs(result, ref, sets, Path(out)).items()}
    return result
