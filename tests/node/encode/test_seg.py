"""DICOM SEG from real MyoPS ground truth: valid, and its pixels are the label masks."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest

from models.measurements import structure_masks
from node.encode.codes import SEGMENT_CONCEPTS
from node.encode.seg import build_segmentation
from node.encode.uids import derive_object_uids
from tests.support.dicom_tools import dciodvfy_errors, needs_dciodvfy
from tests.support.case_series import build_case_series, build_synthetic_series


@needs_dciodvfy
def test_seg_passes_dciodvfy(encoded, tmp_path) -> None:
    seg = encoded[0]
    assert dciodvfy_errors(seg, tmp_path) == []


def test_seg_reads_back_with_the_label_masks(encoded, case_series, tmp_path) -> None:
    path = tmp_path / "seg.dcm"
    encoded[0].save_as(path, enforce_file_format=True)
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY"
    assert seg.get_segment_numbers() == [1, 2, 3, 4]
    source_uids = [uid for uid, _ in case_series.volume.source_refs]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=source_uids, segment_numbers=[1, 2, 3, 4],
        combine_segments=False)
    masks = structure_masks(case_series.labels)
    for i, c in enumerate(SEGMENT_CONCEPTS):
        expected = masks[c.key]
        assert expected.any(), f"test data must exercise segment {c.key}"
        np.testing.assert_array_equal(pixels[..., i].astype(bool), expected)


def test_seg_attributes(encoded, case_series, algorithm) -> None:
    seg = encoded[0]
    n = case_series.volume.shape[0]
    # Empty frames kept: one frame per source slice for every segment.
    assert int(seg.NumberOfFrames) == 4 * n
    assert seg.SeriesNumber == case_series.datasets[0].SeriesNumber * 100 + 1
    assert "research" in seg.SeriesDescription.lower()
    assert seg.StudyInstanceUID == case_series.datasets[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == case_series.datasets[0].FrameOfReferenceUID
    for item, c in zip(seg.SegmentSequence, SEGMENT_CONCEPTS):
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == algorithm.name
        algo = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algo.AlgorithmVersion == algorithm.version
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == c.property_type.value
        assert item.SegmentLabel == c.label
    # Every frame references the source image at its position (by SOP Instance UID).
    src = {str(ds.SOPInstanceUID) for ds in case_series.datasets}
    for item in seg.PerFrameFunctionalGroupsSequence:
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID in src


def test_empty_segment_still_has_its_frames(case_series, algorithm) -> None:
    labels = case_series.labels.copy()
    labels[labels == 4] = 3  # no MVO at all
    uids = derive_object_uids("empty-mvo", "seg", "t")
    seg = build_segmentation(case_series.datasets, labels, case_series.volume, algorithm, uids,
                             series_number=5)
    n = case_series.volume.shape[0]
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
               for f in seg.PerFrameFunctionalGroupsSequence]
    assert numbers.count(4) == n and int(seg.NumberOfFrames) == 4 * n


def test_source_order_does_not_matter(case_series, algorithm) -> None:
    uids = derive_object_uids("order", "seg", "t")
    a = build_segmentation(case_series.datasets, case_series.labels, case_series.volume,
                           algorithm, uids, series_number=5)
    b = build_segmentation(case_series.datasets[::-1], case_series.labels, case_series.volume,
                           algorithm, uids, series_number=5)
    assert a.PixelData == b.PixelData


def test_missing_source_is_an_error(case_series, algorithm) -> None:
    with pytest.raises(ValueError, match="not provided"):
        build_segmentation(case_series.datasets[1:], case_series.labels, case_series.volume,
                           algorithm, derive_object_uids("x", "seg", "t"), series_number=5)


@needs_dciodvfy
@pytest.mark.parametrize("source", ["synthetic", pytest.param("Case3002", marks=pytest.mark.data)])
def test_seg_of_an_enhanced_mr_source(tmp_path, algorithm, source) -> None:
    series = (build_synthetic_series(tmp_path / "ENH", enhanced=True) if source == "synthetic"
              else build_case_series(source, tmp_path / "ENH", enhanced=True))
    assert len(series.datasets) == 1 and series.volume.source_refs[0][1] is not None
    seg = build_segmentation(series.datasets, series.labels, series.volume, algorithm,
                             derive_object_uids("enh", "seg", "t"), series_number=1201)
    assert dciodvfy_errors(seg, tmp_path) == []
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    back = hd.seg.segread(path)
    frames = [f for _, f in series.volume.source_refs]
    pixels = back.get_pixels_by_source_frame(
        source_sop_instance_uid=str(series.datasets[0].SOPInstanceUID),
        source_frame_numbers=frames, segment_numbers=[1, 2, 3, 4], combine_segments=False)
    masks = structure_masks(series.labels)
    for i, c in enumerate(SEGMENT_CONCEPTS):
        np.testing.assert_array_equal(pixels[..., i].astype(bool), masks[c.key])
