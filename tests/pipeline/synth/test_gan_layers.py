"""GAN building blocks: shapes, tanh range, logits, both normalisations, saving."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pipeline.synth import gan_layers as GL

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("norm", GL.NORMS)
def test_generator_shape_and_tanh_range(norm):
    g = GL.build_unet_generator(5, 1, base_filters=4, depth=3, norm=norm, size=32)
    assert g.input_shape == (None, 32, 32, 5) and g.output_shape == (None, 32, 32, 1)
    # Blow up the last layer: a tanh output saturates at +-1 but never leaves [-1, 1].
    last = g.get_layer("generator_out_conv")
    last.set_weights([w * 1e4 for w in last.get_weights()])
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 5)).astype(np.float32)
    y = np.asarray(g(x, training=False))
    assert np.all(np.abs(y) <= 1.0) and np.abs(y).max() > 0.99


def test_generator_default_size_and_channels():
    g = GL.build_unet_generator(3, out_channels=2, base_filters=2, depth=5)
    assert g.output_shape == (None, 128, 128, 2)
    assert g.get_layer("generator_enc4_conv").output.shape[1:3] == (4, 4)  # 128 / 2**5


@pytest.mark.parametrize("norm", GL.NORMS)
def test_discriminator_logit_map(norm):
    d = GL.build_patch_discriminator(6, base_filters=4, n_layers=3, norm=norm, size=64)
    assert d.output_shape == (None, 8, 8, 1)
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 6)).astype(np.float32) * 5
    y = np.asarray(d(x, training=False))
    assert y.min() < 0  # logits, not probabilities


def test_instance_norm_is_per_sample_and_batch_norm_is_not():
    x = np.random.default_rng(2).normal(size=(4, 32, 32, 5)).astype(np.float32)
    x[1:] *= 3.0  # other samples with other statistics
    outs = {}
    for norm in GL.NORMS:
        keras.utils.set_random_seed(0)
        g = GL.build_unet_generator(5, 1, base_filters=4, depth=3, norm=norm, size=32)
        alone = np.asarray(g(x[:1], training=True))
        batched = np.asarray(g(x, training=True))[:1]
        outs[norm] = np.abs(alone - batched).max()
    assert outs["instance"] < 1e-4
    assert outs["batch"] > 1e-3


def test_dropout_only_on_the_innermost_decoder_levels():
    plain = GL.build_unet_generator(5, base_filters=2, depth=5)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in plain.layers)
    g = GL.build_unet_generator(5, base_filters=2, depth=5, dropout=0.5)
    drops = sorted(layer.name for layer in g.layers if isinstance(layer, keras.layers.Dropout))
    assert drops == ["generator_dec2_drop", "generator_dec3_drop", "generator_dec4_drop"]


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        GL.build_unet_generator(5, norm="layer")
    with pytest.raises(ValueError):
        GL.build_unet_generator(5, depth=3, size=36)
    with pytest.raises(ValueError):
        GL.build_patch_discriminator(6, norm="group")


@pytest.mark.parametrize("norm", GL.NORMS)
def test_saved_models_load_with_stock_keras(tmp_path, norm):
    g = GL.build_unet_generator(5, base_filters=2, depth=2, norm=norm, size=16, dropout=0.5)
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 5)).astype(np.float32)
    g.save(tmp_path / "g.keras")
    h = keras.models.load_model(tmp_path / "g.keras", compile=False)
    np.testing.assert_allclose(np.asarray(h(x)), np.asarray(g(x)), atol=1e-6)


def test_gan_range_round_trip():
    x = np.array([-0.2, 0.0, 0.25, 1.0, 1.4], np.float32)
    y = GL.to_gan_range(x)
    np.testing.assert_allclose(y, [-1, -1, -0.5, 1, 1])
    np.testing.assert_allclose(GL.from_gan_range(y), np.clip(x, 0, 1))
