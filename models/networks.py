"""Network builders (Keras 3, backend-agnostic: only keras layers / keras.ops, no TensorFlow calls).

The same code trains under JAX on a GPU machine and under TensorFlow on CPU; the ONNX export
(`models.runtime.export_onnx`) loads the saved `.keras` file under TensorFlow.

* ``build_segmenter``: attention residual U-Net. Encoder and decoder levels are residual blocks
  (conv3x3-BN-ReLU-[dropout]-conv3x3-BN + projected shortcut, ReLU); skips pass through
  additive attention gates (Oktay et al. 2018: the coarser decoder feature gates the encoder
  feature, a sigmoid map in [0,1] rescales it); 5-class softmax output (float32 even under
  mixed precision).
* ``build_localiser``: a small plain U-Net on the whole slice resized to 128x128
  (``models.preprocess.localiser_input``) that predicts the LV mask (cavity + myocardium +
  scar) with a sigmoid; the centre is the centroid of that mask
  (``models.preprocess.centre_from_probability``). A mask target (rather than a Gaussian heat
  map around a point) uses the labels as they are and trains with Dice + BCE.

Only stock layers are used, so the `.keras` files load without custom objects; ``AttentionGate``
is additionally registered for code that wants it as one layer.
"""

from __future__ import annotations

import keras
from keras import layers


def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def residual_block(x, filters: int, dropout: float, name: str):
    """conv-BN-ReLU-(dropout)-conv-BN + shortcut (1x1 conv-BN when channels change), then ReLU."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn_relu(x, filters, f"{name}_a")
    if dropout > 0:
        y = layers.SpatialDropout2D(dropout, name=f"{name}_drop")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(name=f"{name}_b_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def attention_gate(skip, gate, inter_filters: int, name: str):
    """Additive attention gate: skip (H, W, Cs) gated by ``gate`` (H/2, W/2, Cg) -> skip * alpha(H, W, 1)."""
    # theta: 2x2 kernel, stride 2, as in Oktay et al.'s implementation. Not 1x1/stride 2: TF 2.21's
    # oneDNN CPU kernels crash (SIGSEGV) in the backward pass of a 1x1 stride-2 convolution.
    theta = layers.Conv2D(inter_filters, 2, strides=2, use_bias=False, name=f"{name}_theta")(skip)
    phi = layers.Conv2D(inter_filters, 1, use_bias=True, name=f"{name}_phi")(gate)
    f = layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    psi = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_psi")(f)
    alpha = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(psi)
    return layers.Multiply(name=f"{name}_apply")([skip, alpha])


@keras.saving.register_keras_serializable(package="lgenode")
class AttentionGate(layers.Layer):
    """``attention_gate`` as one layer (call with [skip, gate]); serialisable."""

    def __init__(self, inter_filters: int, **kwargs):
        super().__init__(**kwargs)
        self.inter_filters = inter_filters
        self.theta = layers.Conv2D(inter_filters, 2, strides=2, use_bias=False)
        self.phi = layers.Conv2D(inter_filters, 1)
        self.psi = layers.Conv2D(1, 1, activation="sigmoid")
        self.up = layers.UpSampling2D(2, interpolation="bilinear")

    def build(self, input_shape):
        skip_shape, gate_shape = input_shape
        self.theta.build(skip_shape)
        self.phi.build(gate_shape)
        self.psi.build((*gate_shape[:-1], self.inter_filters))
        self.built = True

    def call(self, inputs):
        skip, gate = inputs
        f = keras.ops.relu(self.theta(skip) + self.phi(gate))
        return skip * self.up(self.psi(f))

    def get_config(self):
        return {**super().get_config(), "inter_filters": self.inter_filters}


def build_segmenter(
    input_shape: tuple[int, int, int] = (128, 128, 1),
    n_classes: int = 5,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.1,
) -> keras.Model:
    """Attention residual U-Net with ``depth`` poolings; filters double per level from ``base_filters``.

    Input sides must be divisible by 2**depth. Output: (H, W, n_classes) softmax, float32.
    """
    if input_shape[0] % (2**depth) or input_shape[1] % (2**depth):
        raise ValueError(f"input sides {input_shape[:2]} must be divisible by 2**depth={2**depth}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for level in range(depth):
        f = base_filters * 2**level
        x = residual_block(x, f, dropout if level > 0 else 0.0, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = residual_block(x, base_filters * 2**depth, dropout, "bottleneck")
    for level in reversed(range(depth)):
        f = base_filters * 2**level
        gated = attention_gate(skips[level], x, max(f // 2, 4), f"att{level}")
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"cat{level}")([x, gated])
        x = residual_block(x, f, dropout if level > 0 else 0.0, f"dec{level}")
    logits = layers.Conv2D(n_classes, 1, name="logits")(x)
    probs = layers.Activation("softmax", dtype="float32", name="probs")(logits)
    return keras.Model(inputs, probs, name="att_res_unet")


def build_localiser(
    input_shape: tuple[int, int, int] = (128, 128, 1), base_filters: int = 8, depth: int = 3
) -> keras.Model:
    """Small U-Net (two conv-BN-ReLU per level) -> LV mask probability (H, W, 1), sigmoid, float32."""
    inputs = keras.Input(shape=input_shape, name="slice")
    x = inputs
    skips = []
    for level in range(depth):
        f = base_filters * 2**level
        x = _conv_bn_relu(x, f, f"l_enc{level}a")
        x = _conv_bn_relu(x, f, f"l_enc{level}b")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"l_pool{level}")(x)
    x = _conv_bn_relu(x, base_filters * 2**depth, "l_mid_a")
    x = _conv_bn_relu(x, base_filters * 2**depth, "l_mid_b")
    for level in reversed(range(depth)):
        f = base_filters * 2**level
        x = layers.UpSampling2D(2, name=f"l_up{level}")(x)
        x = layers.Concatenate(name=f"l_cat{level}")([x, skips[level]])
        x = _conv_bn_relu(x, f, f"l_dec{level}a")
        x = _conv_bn_relu(x, f, f"l_dec{level}b")
    out = layers.Conv2D(1, 1, name="l_logits")(x)
    out = layers.Activation("sigmoid", dtype="float32", name="lv_prob")(out)
    return keras.Model(inputs, out, name="lv_localiser")
