"""A radiologist's edited SEG reaching the node is re-measured into a new SR that references it."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select, update

from node.db.models import Instance, Job, Series, utcnow
from node.deliver.outbox import Outbox
from node.encode import AlgorithmInfo
from node.encode.readback import seg_volumes_ml, sr_values
from node.job.queue import JobQueue
from node.job.stages import build_stages
from node.job.worker import Worker
from node.series.completion import sweep
from tests.conftest import dcmtk_env, which_dcmtk
from tests.support.case_series import build_synthetic_series, encode_case


def _send(port: int, files: list[Path]) -> None:
    r = subprocess.run([which_dcmtk("storescu"), "-R", "-aec", "LGENODE", "127.0.0.1", str(port), *map(str, files)],
                       capture_output=True, text=True, env=dcmtk_env(), timeout=120)
    assert r.returncode == 0, r.stderr


def _edited_seg(ai_seg: pydicom.Dataset, series, labels: np.ndarray, out: Path) -> Path:
    """What the viewer plugin stores: the AI SEG's segments, edited pixels, SEMIAUTOMATIC."""
    ai = hd.seg.Segmentation.from_dataset(ai_seg)
    descs = []
    for item in ai.SegmentSequence:
        algo = item.SegmentationAlgorithmIdentificationSequence[0]
        descs.append(hd.seg.SegmentDescription(
            segment_number=int(item.SegmentNumber), segment_label=str(item.SegmentLabel),
            segmented_property_category=hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyCategoryCodeSequence[0]),
            segmented_property_type=hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyTypeCodeSequence[0]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=str(algo.AlgorithmName), version=str(algo.AlgorithmVersion),
                family=hd.sr.CodedConcept.from_dataset(algo.AlgorithmFamilyCodeSequence[0]))))
    masks = np.stack([np.isin(labels, v) for v in ((1,), (2, 3, 4), (3, 4), (4,))], axis=-1)
    seg = hd.seg.Segmentation(
        source_images=series.datasets, pixel_array=masks.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descs,
        series_instance_uid=generate_uid(), series_number=int(ai_seg.SeriesNumber) + 10,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="OHIF plugin",
        manufacturer_model_name="lge-review", software_versions="test", device_serial_number="1",
        content_creator_name="Doe^Jane", series_description=str(ai_seg.SeriesDescription) + " v2",
        omit_empty_frames=False)
    path = out / "edited_seg.dcm"
    seg.save_as(path)
    return path


def test_edited_seg_remeasured_into_new_sr(scp, core, tmp_path: Path) -> None:
    series = build_synthetic_series(tmp_path / "lge")
    _send(scp.port, series.files)
    assert len(sweep(core.sessions, core.cfg, now=utcnow() + timedelta(seconds=5))) == 1
    with core.sessions.begin() as s:  # the AI job ran earlier (not needed here)
        s.execute(update(Job).values(state="done"))

    _, _, objects = encode_case(series, AlgorithmInfo(name="lgenode-test", version="1.0"), with_report=False)
    ai_seg = objects[0]
    # The reviewer grows the infarct: two more pixel rings of myocardium become infarct.
    from scipy.ndimage import binary_dilation

    edited = series.labels.copy()
    grow = binary_dilation(np.isin(edited, (3, 4)), iterations=2) & (edited == 2)
    edited[grow] = 3
    assert grow.sum() > 50
    seg_path = _edited_seg(ai_seg, series, edited, tmp_path)

    # The AI SEG routed back to us is ignored; the edited one is queued for re-measuring.
    ai_path = tmp_path / "ai_seg.dcm"
    ai_seg.save_as(ai_path)
    _send(scp.port, [ai_path, seg_path])
    sweep(core.sessions, core.cfg, now=utcnow() + timedelta(seconds=5))
    with core.sessions() as s:
        states = {r.series_uid: (r.state, r.reason) for r in s.scalars(select(Series))}
        job = s.scalar(select(Job).where(Job.kind == "remeasure"))
    assert states[str(ai_seg.SeriesInstanceUID)][0] == "ignored" and "automatic" in states[str(ai_seg.SeriesInstanceUID)][1]
    edited_ds = pydicom.dcmread(seg_path)
    assert states[str(edited_ds.SeriesInstanceUID)][0] == "selected"
    assert job is not None and job.series_uid == str(edited_ds.SeriesInstanceUID)

    outbox = Outbox(core.sessions, core.files.root, core.cfg)
    worker = Worker(JobQueue(core.sessions), core.sessions, core.files.root, stages=build_stages(core.cfg, outbox),
                    files=core.files)
    assert worker.run_once()
    with core.sessions() as s:
        job = s.get(Job, job.id)
        assert job.state == "done", job.reason
        sr_uid = job.result["objects"][0]["sop_instance_uid"]
        sr_path = core.files.root / s.get(Instance, sr_uid).path
    sr = pydicom.dcmread(sr_path)
    values = sr_values(sr)
    assert {ref[0] for ref in values.referenced_segments.values()} == {str(edited_ds.SOPInstanceUID)}
    vols = seg_volumes_ml(edited_ds)
    for key, ml in vols.items():
        assert values.structures[key]["volume_ml"] == np.float64(ml) or abs(values.structures[key]["volume_ml"] - ml) < 1e-6
    assert vols["infarct"] > seg_volumes_ml(ai_seg)["infarct"]  # the edit is what was measured
    assert int(sr.SeriesNumber) == int(edited_ds.SeriesNumber) + 1
