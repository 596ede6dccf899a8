"""Ensembles of fold models: averaged softmax, per-series quality score and review flag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.segment import quality_from_probabilities


def _probs(labels: np.ndarray, confidence: float) -> np.ndarray:
    """Softmax-like (n, H, W, 5) putting ``confidence`` on ``labels``, the rest spread."""
    p = np.full((*labels.shape, 5), (1 - confidence) / 4, np.float32)
    np.put_along_axis(p, labels[..., None].astype(int), confidence, axis=-1)
    return p


def _ring(n: int = 2, size: int = 32) -> np.ndarray:
    rr, cc = np.mgrid[0:size, 0:size]
    d = np.hypot(rr - size / 2, cc - size / 2)
    lab = np.zeros((size, size), np.uint8)
    lab[d < 6] = 1
    lab[(d >= 6) & (d < 10)] = 2
    lab[(d >= 6) & (d < 10) & (cc > size / 2 + 3)] = 3
    return np.repeat(lab[None], n, axis=0)


def test_quality_confident_agreeing_members_score_high():
    lab = _ring()
    q = quality_from_probabilities(np.stack([_probs(lab, 0.97)] * 3), threshold=0.8)
    assert q.members == 3 and q.score > 0.9 and q.infarct_pct_spread == 0.0
    assert not q.needs_review


def test_quality_drops_when_members_disagree_and_flags():
    lab = _ring()
    shifted = np.roll(lab, 5, axis=2)  # one member puts the wall elsewhere
    agree = quality_from_probabilities(np.stack([_probs(lab, 0.97)] * 3), threshold=0.8)
    disagree = quality_from_probabilities(
        np.stack([_probs(lab, 0.97), _probs(lab, 0.97), _probs(shifted, 0.97)]), threshold=0.8)
    assert disagree.score < agree.score - 0.1
    assert disagree.needs_review and disagree.threshold == 0.8
    no_infarct = np.where(lab == 3, 2, lab)
    spread = quality_from_probabilities(np.stack([_probs(lab, 0.9), _probs(no_infarct, 0.9)]),
                                        threshold=None)
    pct = 100 * (lab == 3).sum() / np.isin(lab, (2, 3)).sum()
    assert spread.infarct_pct_spread == pytest.approx(pct / 2, rel=1e-6)
    assert not spread.needs_review  # no threshold: never flagged


def test_ensemble_weights_folder_averages_members(untrained_weights, tmp_path, phantom, volume_of):
    """A weights folder with members fold0/fold1 loads both; the result's softmax is their mean."""
    from models.runtime import Segmenter
    from models.segment import clear_cache, load_model, segment_volume

    ens = tmp_path / "ens"
    for k, m in enumerate(("fold0", "fold1")):
        (ens / m).mkdir(parents=True)
        for name in ("segmenter.keras", "localiser.keras", "segmenter.onnx", "localiser.onnx"):
            shutil.copy2(untrained_weights / name, ens / m / name)
    # member 1 differs: re-initialise its segmenter
    import keras

    from models.networks import build_segmenter

    keras.utils.set_random_seed(99)
    build_segmenter().save(ens / "fold1" / "segmenter.keras")
    (ens / "model.json").write_text(json.dumps({
        "name": "test-ensemble", "version": "0.0.2-test", "segmenter": "fold0/segmenter",
        "localiser": "fold0/localiser", "members": ["fold0", "fold1"],
        "quality_threshold": 0.5}))
    clear_cache()
    info, model = load_model(ens, "keras")
    assert info.members == ["fold0", "fold1"] and model.n_members == 2
    img, _ = phantom()
    vol = volume_of(img)
    x = np.zeros((2, 128, 128, 1), np.float32) + 0.3
    single = [Segmenter.from_dir(ens / m, "keras").probabilities(x) for m in ("fold0", "fold1")]
    assert not np.allclose(single[0], single[1])
    np.testing.assert_allclose(model.probabilities(x), (single[0] + single[1]) / 2, atol=1e-5)
    res = segment_volume(vol, ens, runtime="keras")
    assert res.quality is not None and res.quality.members == 2
    assert 0.0 <= res.quality.score <= 1.0 and res.quality.threshold == 0.5
    assert res.quality.needs_review == (res.quality.score < 0.5)
    assert res.labels.shape == vol.pixels.shape


def test_missing_member_file_is_named(untrained_weights, tmp_path):
    from models.segment import WeightsNotFoundError, load_model

    ens = tmp_path / "ens"
    (ens / "fold0").mkdir(parents=True)
    shutil.copy2(untrained_weights / "segmenter.onnx", ens / "fold0" / "segmenter.onnx")
    (ens / "model.json").write_text(json.dumps({
        "name": "t", "version": "0", "segmenter": "fold0/segmenter", "localiser": None,
        "members": ["fold0", "fold1"]}))
    with pytest.raises(WeightsNotFoundError, match="fold1/segmenter.onnx"):
        load_model(ens, "onnx")


def test_single_model_quality_has_one_member(untrained_weights, phantom, volume_of):
    from models.segment import segment_volume

    img, _ = phantom()
    res = segment_volume(volume_of(img), Path(untrained_weights), runtime="onnx")
    assert res.quality is not None and res.quality.members == 1
    assert res.quality.infarct_pct_spread == 0.0 and res.quality.threshold is None


def test_min_infarct_percent_from_model_json_is_applied(tmp_path, phantom, volume_of):
    """The shipped ensemble on an infarcted phantom: with the rule off the infarct is reported;
    a minimum above the infarct's size reports none, the wall unchanged."""
    from models.postprocess import infarct_percent
    from models.segment import clear_cache, segment_volume
    from tests.shipped import SHIPPED

    doc = json.loads((SHIPPED / "model.json").read_text())
    assert doc.get("min_infarct_percent", 0) > 0, "the shipped model sets a minimum reportable infarct"
    w = tmp_path / "w"
    w.mkdir()
    for m in doc["members"]:
        (w / m).symlink_to(SHIPPED / m)
    img, _ = phantom()
    vol = volume_of(img)
    results = {}
    for minimum in (0.0, 100.0):
        (w / "model.json").write_text(json.dumps({**doc, "min_infarct_percent": minimum}))
        clear_cache()
        results[minimum] = segment_volume(vol, w, runtime="onnx-int8")
    clear_cache()
    found = infarct_percent(results[0.0].roi_labels)
    assert found > 0 and results[0.0].quality.infarct_below_minimum is None
    assert not np.isin(results[100.0].roi_labels, (3, 4)).any()
    assert not np.isin(results[100.0].labels, (3, 4)).any()
    np.testing.assert_array_equal(results[100.0].roi_labels > 0, results[0.0].roi_labels > 0)
    # the result says what was dropped (the SR/PDF and the job record carry it)
    q = results[100.0].quality
    assert q.infarct_below_minimum == pytest.approx(found) and q.min_infarct_percent == 100.0
    assert q.to_dict()["infarct_below_minimum"] == round(found, 2)
