"""Image features for KID / Fréchet distance from one of our segmenters (a weights folder).

No ImageNet network can be loaded here, so the feature space is the deepest encoder
output of the attention residual U-Net (``models.networks.build_segmenter``): the output of the
``bottleneck`` residual block (layer ``bottleneck_out``, H/16 x W/16 x 16·base_filters, i.e.
8x8x256 for the shipped base-16 model), taken before the first up-sampling (``up{depth-1}``) and
global-average-pooled to one vector per image. Loaded with stock Keras from ``segmenter.keras``
of a weights folder (the layout of ``models.segment``); backend-neutral (TensorFlow or JAX).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BOTTLENECK_LAYER = "bottleneck_out"
DEFAULT_BATCH = 32


class FeatureExtractor:
    """``extractor(images (n, H, W) or (n, H, W, 1)) -> (n, channels)`` float64, in batches."""

    def __init__(self, model, layer: str = BOTTLENECK_LAYER, batch_size: int = DEFAULT_BATCH,  # type: ignore[no-untyped-def]
                 source: str = "") -> None:
        import keras

        try:
            out = model.get_layer(layer).output
        except ValueError as exc:
            names = [lay.name for lay in model.layers]
            raise ValueError(f"layer {layer!r} not in model {model.name!r} (has e.g. {names[-8:]})") from exc
        if len(out.shape) != 4:
            raise ValueError(f"layer {layer!r} output {out.shape} is not a (n, h, w, c) feature map")
        # Pool inside the graph: the 4-D map never leaves the backend.
        pooled = keras.layers.GlobalAveragePooling2D(name="feature_gap")(out)
        self.model = keras.Model(model.inputs, pooled, name=f"{model.name}_features")
        self.layer = layer
        self.feature_map_shape = tuple(int(v) for v in out.shape[1:])
        self.dim = self.feature_map_shape[-1]
        self.batch_size = batch_size
        self.source = source

    def __call__(self, images: np.ndarray, progress: bool = False, desc: str = "features") -> np.ndarray:
        from tqdm import tqdm

        x = np.asarray(images, np.float32)
        if x.ndim == 3:
            x = x[..., None]
        parts = []
        starts = range(0, len(x), self.batch_size)
        for i in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
            parts.append(np.asarray(self.model.predict_on_batch(x[i : i + self.batch_size]), np.float64))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim))

    def describe(self) -> dict[str, object]:
        return {"layer": self.layer, "feature_map_shape": list(self.feature_map_shape), "dim": self.dim,
                "pooling": "global average", "model": self.source}


def load_feature_extractor(weights_dir: Path | str, layer: str = BOTTLENECK_LAYER,
                           batch_size: int = DEFAULT_BATCH) -> FeatureExtractor:
    """Feature extractor from ``<weights_dir>/<segmenter>.keras`` (name from model.json if present)."""
    import keras

    import models.networks  # noqa: F401  (registers the custom layer before loading)

    weights_dir = Path(weights_dir)
    stem = "segmenter"
    if (weights_dir / "model.json").exists():
        from models.segment import read_model_info

        stem = read_model_info(weights_dir).segmenter
    path = weights_dir / f"{stem}.keras"
    if not path.exists():
        raise FileNotFoundError(f"no {path.name} in {weights_dir} (the feature extractor needs the Keras file)")
    model = keras.models.load_model(str(path), compile=False)
    fx = FeatureExtractor(model, layer, batch_size, source=str(path))
    log.info("features: %s of %s, %s -> %d", layer, path, fx.feature_map_shape, fx.dim)
    return fx
