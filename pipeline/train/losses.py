"""Losses and metrics for training, written with ``keras.ops`` only so that the same code runs
under TensorFlow (CPU) and JAX (GPU, ``KERAS_BACKEND=jax``).

Segmenter: class-weighted cross-entropy + soft Dice over the foreground classes (and over
infarct incl. MVO, the clinical quantity). The soft Dice is
pooled over the whole batch (sums over batch and pixels, then divided), so a class absent from one
slice does not produce a 0/0 term, and rare classes (no-reflow) still get a gradient.

Localiser: binary cross-entropy + soft Dice on the LV mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

_EPS = 1e-7
# Label of pixels known to be infarct or no-reflow without saying which (MyoPS scar: that data set
# has no MVO class). Only ever in training targets; never predicted.
AMBIGUOUS_LESION = 5


def _labels_like(y_true, y_pred):
    # Sparse labels (B, H, W) or (B, H, W, 1) -> int32 (B, H, W).
    return ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")


@keras.saving.register_keras_serializable(package="lgenode_pipeline")
class WeightedCEDiceLoss(keras.losses.Loss):
    """``mean_pixels(sum_c w_c * -y_c log p_c) + dice_weight * (1 - mean_{c in fg} softDice_c)``.

    ``y_true``: integer labels (B, H, W[, 1]); ``y_pred``: softmax (B, H, W, C).
    """

    def __init__(self, class_weights: Sequence[float], dice_weight: float = 1.0,
                 dice_classes: Sequence[int] | None = None, smooth: float = 1.0,
                 name: str = "ce_dice", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        self.n_classes = len(self.class_weights)
        self.dice_weight = float(dice_weight)
        self.dice_classes = list(dice_classes) if dice_classes is not None else list(
            range(1, self.n_classes))
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        labels = _labels_like(y_true, y_pred)
        # AMBIGUOUS_LESION pixels (data sets without an MVO class: "infarct or MVO") supervise
        # only the sum p3 + p4; they are left out of the separate infarct and MVO terms.
        amb = ops.cast(ops.equal(labels, AMBIGUOUS_LESION), y_pred.dtype)  # (B, H, W)
        onehot = ops.one_hot(ops.where(labels == AMBIGUOUS_LESION, 0, labels), self.n_classes,
                             dtype=y_pred.dtype) * (1.0 - amb)[..., None]
        p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
        w = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        ce = -ops.sum(onehot * ops.log(p) * w, axis=-1)  # (B, H, W)
        if self.n_classes > 4:
            lesion = ops.clip(y_pred[..., 3] + y_pred[..., 4], _EPS, 1.0)
            ce = ce - amb * w[3] * ops.log(lesion)
        loss = ops.mean(ce)
        if self.dice_weight > 0:
            axes = (0, 1, 2)
            keep = (1.0 - amb)[..., None]
            inter = ops.sum(onehot * y_pred, axis=axes)
            denom = ops.sum(onehot, axis=axes) + ops.sum(y_pred * keep, axis=axes)
            dice = (2.0 * inter + self.smooth) / (denom + self.smooth)
            idx = ops.convert_to_tensor(self.dice_classes, dtype="int32")
            terms = ops.take(dice, idx)
            if self.n_classes > 4:
                # infarct incl. MVO (the clinical quantity), over every pixel
                t_u = onehot[..., 3] + onehot[..., 4] + amb
                p_u = y_pred[..., 3] + y_pred[..., 4]
                d_u = (2.0 * ops.sum(t_u * p_u) + self.smooth) / (
                    ops.sum(t_u) + ops.sum(p_u) + self.smooth)
                terms = ops.concatenate([terms, ops.reshape(d_u, (1,))])
            loss = loss + self.dice_weight * (1.0 - ops.mean(terms))
        return loss

    def get_config(self):
        return {"name": self.name, "class_weights": self.class_weights,
                "dice_weight": self.dice_weight, "dice_classes": self.dice_classes,
                "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="lgenode_pipeline")
class BCEDiceLoss(keras.losses.Loss):
    """Binary cross-entropy + soft Dice (batch-pooled) for a sigmoid mask output."""

    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0, name: str = "bce_dice",
                 **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        y = ops.cast(ops.reshape(y_true, ops.shape(y_pred)), y_pred.dtype)
        p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
        bce = -ops.mean(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
        inter = ops.sum(y * y_pred)
        dice = (2.0 * inter + self.smooth) / (ops.sum(y) + ops.sum(y_pred) + self.smooth)
        return bce + self.dice_weight * (1.0 - dice)

    def get_config(self):
        return {"name": self.name, "dice_weight": self.dice_weight, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="lgenode_pipeline")
class PooledDice(keras.metrics.Metric):
    """Hard (argmax) Dice pooled over every pixel seen in the epoch, averaged over ``classes``.

    The same definition as the evaluation's pooled per-class Dice, restricted to the ROI. A class
    absent from both prediction and truth in the whole epoch counts as 1.
    """

    def __init__(self, classes: Sequence[int] = (1, 2, 3, 4), n_classes: int = 5,
                 name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.classes = [int(c) for c in classes]
        self.n_classes = int(n_classes)
        self.inter = self.add_variable(shape=(n_classes,), initializer="zeros", name="inter")
        self.total = self.add_variable(shape=(n_classes,), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = _labels_like(y_true, y_pred)
        pred = ops.argmax(y_pred, axis=-1)
        # an "infarct or MVO" pixel is right when predicted as either
        labels = ops.where(labels == AMBIGUOUS_LESION,
                           ops.cast(ops.where(pred == 4, 4, 3), labels.dtype), labels)
        t = ops.one_hot(labels, self.n_classes, dtype="float32")
        p = ops.one_hot(pred, self.n_classes, dtype="float32")
        axes = tuple(range(len(t.shape) - 1))
        self.inter.assign_add(ops.sum(t * p, axis=axes))
        self.total.assign_add(ops.sum(t, axis=axes) + ops.sum(p, axis=axes))

    def result(self):
        dice = ops.where(self.total > 0, 2.0 * self.inter / ops.maximum(self.total, 1.0), 1.0)
        idx = ops.convert_to_tensor(self.classes, dtype="int32")
        return ops.mean(ops.take(dice, idx))

    def reset_state(self):
        self.inter.assign(ops.zeros((self.n_classes,)))
        self.total.assign(ops.zeros((self.n_classes,)))

    def get_config(self):
        return {"name": self.name, "classes": self.classes, "n_classes": self.n_classes}


@keras.saving.register_keras_serializable(package="lgenode_pipeline")
class BinaryPooledDice(keras.metrics.Metric):
    """Hard Dice of a thresholded sigmoid mask, pooled over the epoch (localiser)."""

    def __init__(self, threshold: float = 0.5, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = float(threshold)
        self.inter = self.add_variable(shape=(), initializer="zeros", name="inter")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y = ops.cast(ops.reshape(y_true, ops.shape(y_pred)) >= 0.5, "float32")
        p = ops.cast(y_pred >= self.threshold, "float32")
        self.inter.assign_add(ops.sum(y * p))
        self.total.assign_add(ops.sum(y) + ops.sum(p))

    def result(self):
        return ops.where(self.total > 0, 2.0 * self.inter / ops.maximum(self.total, 1.0), 1.0)

    def reset_state(self):
        self.inter.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


def segmenter_metrics() -> list[keras.metrics.Metric]:
    """Mean foreground Dice (early-stopping monitor) and per-class Dice for the curves."""
    names = {1: "cavity", 2: "myo", 3: "infarct", 4: "mvo"}
    return [PooledDice((1, 2, 3, 4), name="dice")] + [
        PooledDice((c,), name=f"dice_{n}") for c, n in names.items()]
