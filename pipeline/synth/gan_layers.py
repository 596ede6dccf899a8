"""Generators and discriminators of the image-to-image GANs (pix2pix, CycleGAN), Keras layers only.

Stock layers throughout (instance norm is ``GroupNormalization`` with one group per channel), so
the ``.keras`` files load without custom objects; all kernels start from N(0, 0.02). No
convolution is 1x1 with stride 2 (TF 2.21's oneDNN crash, see ``pipeline.commands._tf_defaults``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

NORMS = ("batch", "instance")


def _init() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _norm(x, norm: str, name: str):
    if norm == "batch":
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    if norm == "instance":
        return layers.GroupNormalization(groups=int(x.shape[-1]), epsilon=1e-5, name=f"{name}_in")(x)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def build_unet_generator(
    in_channels: int,
    out_channels: int = 1,
    base_filters: int = 32,
    depth: int = 5,
    norm: str = "batch",
    name: str = "generator",
    *,
    size: int = 128,
    dropout: float = 0.0,
    dropout_levels: int = 3,
    max_filters_factor: int = 8,
) -> keras.Model:
    """The pix2pix U-Net (Isola et al. 2017), (size, size, in_channels) -> (size, size, out_channels).

    Encoder: ``depth`` 4x4 stride-2 convolutions with LeakyReLU 0.2, normalised on every level but
    the first and the innermost. Decoder: 4x4 stride-2 transposed convolutions, normalisation,
    optional dropout, ReLU, concatenation with the mirrored encoder level; a last transposed
    convolution with tanh, so images live in [-1, 1] inside the nets (``to_gan_range``).

    Parameters
    ----------
    in_channels: int
        Input channels (5 for a one-hot mask, 1 for an image).
    out_channels: int
        Output channels.
    base_filters: int
        Filters of the first level; level ``l`` has ``base_filters * min(2**l, max_filters_factor)``.
    depth: int
        Levels; ``size`` must be divisible by ``2**depth``.
    norm: str
        ``"batch"`` (momentum 0.9, so the moving statistics follow a short GAN run) or ``"instance"``.
    name: str
        Model name and layer-name prefix.
    size: int
        Input size.
    dropout: float
        Dropout rate on the ``dropout_levels`` innermost decoder levels (pix2pix: 0.5; 0: none).
    dropout_levels: int
        Decoder levels with dropout.
    max_filters_factor: int
        Cap of the filter multiplier.

    Returns
    -------
    keras.Model
        The generator.

    Raises
    ------
    ValueError
        On an unknown ``norm`` or a ``size`` not divisible by ``2**depth``.
    """
    _check_norm(norm)
    if depth < 1 or size % (2**depth):
        raise ValueError(f"size {size} must be divisible by 2**depth = {2**depth} (depth >= 1)")
    inputs = keras.Input(shape=(size, size, in_channels), name="condition")
    x = inputs
    skips = []
    for level in range(depth):
        f = base_filters * min(2**level, max_filters_factor)
        if level > 0:
            x = layers.LeakyReLU(0.2, name=f"{name}_enc{level}_act")(x)
        x = layers.Conv2D(f, 4, strides=2, padding="same", use_bias=False,
                          kernel_initializer=_init(), name=f"{name}_enc{level}_conv")(x)
        if 0 < level < depth - 1:
            x = _norm(x, norm, f"{name}_enc{level}")
        skips.append(x)
    # Decoder: level depth-1 (innermost) up to 1; each output is concatenated with skip[level-1].
    for level in reversed(range(1, depth)):
        f = base_filters * min(2 ** (level - 1), max_filters_factor)
        x = layers.ReLU(name=f"{name}_dec{level}_act")(x)
        x = layers.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=_init(), name=f"{name}_dec{level}_conv")(x)
        x = _norm(x, norm, f"{name}_dec{level}")
        if dropout > 0 and level >= depth - dropout_levels:
            x = layers.Dropout(dropout, name=f"{name}_dec{level}_drop")(x)
        x = layers.Concatenate(name=f"{name}_dec{level}_cat")([x, skips[level - 1]])
    x = layers.ReLU(name=f"{name}_out_act")(x)
    x = layers.Conv2DTranspose(out_channels, 4, strides=2, padding="same",
                               kernel_initializer=_init(), name=f"{name}_out_conv")(x)
    out = layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(x)
    return keras.Model(inputs, out, name=name)


def build_patch_discriminator(
    in_channels: int,
    base_filters: int = 32,
    n_layers: int = 3,
    norm: str = "batch",
    name: str = "discriminator",
    *,
    size: int = 128,
) -> keras.Model:
    """The PatchGAN, (size, size, in_channels) -> (size / 2**n_layers, size / 2**n_layers, 1) logits.

    ``n_layers`` 4x4 stride-2 convolutions (no norm on the first), one 4x4 stride-1 convolution and
    a 1-channel 4x4 convolution, no sigmoid (the losses take logits). "same" padding keeps the map
    at ``size / 2**n_layers`` (16x16 for 128 px and 3 layers); each logit sees 70x70 pixels.

    Parameters
    ----------
    in_channels: int
        Input channels (condition + image for pix2pix, the image for CycleGAN).
    base_filters: int
        Filters of the first convolution (doubling per layer, at most x8).
    n_layers: int
        Stride-2 convolutions.
    norm: str
        ``"batch"`` or ``"instance"``.
    name: str
        Model name and layer-name prefix.
    size: int
        Input size; divisible by ``2**n_layers``.

    Returns
    -------
    keras.Model
        The discriminator.

    Raises
    ------
    ValueError
        On an unknown ``norm`` or a ``size`` not divisible by ``2**n_layers``.
    """
    _check_norm(norm)
    if n_layers < 1 or size % (2**n_layers):
        raise ValueError(f"size {size} must be divisible by 2**n_layers = {2**n_layers}")
    inputs = keras.Input(shape=(size, size, in_channels), name="pair")
    x = inputs
    for i in range(n_layers + 1):
        f = base_filters * min(2**i, 8)
        stride = 2 if i < n_layers else 1
        x = layers.Conv2D(f, 4, strides=stride, padding="same", use_bias=i == 0,
                          kernel_initializer=_init(), name=f"{name}_c{i}_conv")(x)
        if i > 0:
            x = _norm(x, norm, f"{name}_c{i}")
        x = layers.LeakyReLU(0.2, name=f"{name}_c{i}_act")(x)
    logits = layers.Conv2D(1, 4, padding="same", kernel_initializer=_init(), name=f"{name}_logits")(x)
    logits = layers.Activation("linear", dtype="float32", name=f"{name}_out")(logits)
    return keras.Model(inputs, logits, name=name)


def _conv_norm_relu(x, filters: int, kernel: int, name: str, strides: int = 1, relu: bool = True):  # type: ignore[no-untyped-def]
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer=_init(), name=f"{name}_conv")(x)
    x = layers.GroupNormalization(groups=-1, epsilon=1e-5, name=f"{name}_in")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def build_resnet_generator(base_filters: int = 16, n_res_blocks: int = 6, name: str = "generator",
                           size: int | None = None) -> keras.Model:
    """The CycleGAN paper's ResNet generator, (size, size, 1) -> (size, size, 1) with tanh output.

    7x7 convolution, two stride-2 downsamplings, ``n_res_blocks`` residual blocks, two bilinear
    upsamplings each followed by a convolution (no transposed convolutions: no checkerboard
    artefacts), 7x7 convolution. Instance norm, zero padding, stock layers only.

    Parameters
    ----------
    base_filters: int
        Filters of the first convolution (x2 and x4 after the downsamplings).
    n_res_blocks: int
        Residual blocks at a quarter of the input size.
    name: str
        Model name and layer-name prefix.
    size: int | None
        Input size; None accepts any multiple of 4 (the net is fully convolutional).

    Returns
    -------
    keras.Model
        The generator.
    """
    b = base_filters
    inputs = keras.Input(shape=(size, size, 1), name="image")
    x = _conv_norm_relu(inputs, b, 7, f"{name}_c7")
    x = _conv_norm_relu(x, 2 * b, 3, f"{name}_d1", strides=2)
    x = _conv_norm_relu(x, 4 * b, 3, f"{name}_d2", strides=2)
    for i in range(n_res_blocks):
        y = _conv_norm_relu(x, 4 * b, 3, f"{name}_r{i}a")
        y = _conv_norm_relu(y, 4 * b, 3, f"{name}_r{i}b", relu=False)
        x = layers.Add(name=f"{name}_r{i}_add")([x, y])
    for i, f in enumerate((2 * b, b)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_u{i}_up")(x)
        x = _conv_norm_relu(x, f, 3, f"{name}_u{i}")
    x = layers.Conv2D(1, 7, padding="same", kernel_initializer=_init(), name=f"{name}_out_conv")(x)
    out = layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(x)
    return keras.Model(inputs, out, name=name)


def to_gan_range(x: np.ndarray) -> np.ndarray:
    """Normalised image (about [0, 1], ``pp.normalize_intensity``) -> [-1, 1]: 2*clip(x, 0, 1) - 1."""
    return (2.0 * np.clip(x, 0.0, 1.0) - 1.0).astype(np.float32)


def from_gan_range(y: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] -> [0, 1] (float32)."""
    return ((np.asarray(y, dtype=np.float32) + 1.0) * 0.5).clip(0.0, 1.0).astype(np.float32)
