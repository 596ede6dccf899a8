"""DICOM Segmentation (BINARY) of the LV cavity, myocardium, infarct and MVO (highdicom).

Segments (codes and reasons in `node.encode.codes`): 1 LV cavity, 2 LV myocardium (2+3+4),
3 myocardial infarction (3+4), 4 microvascular obstruction (4). They nest, so they overlap;
BINARY SEG stores each segment's frames separately and allows that.

Empty-frame policy: **empty frames are kept** (``omit_empty_frames=False``). Every segment has
one frame per source slice, so each frame's Derivation Image / Source Image references and
Plane Position line up one-to-one with the source series. Viewers that place SEG frames by index
or by the source image list (the failure in MONAI Deploy issue #397, where a SEG whose empty
frames were dropped was drawn on the wrong slices) therefore place it correctly, and a segment
that is absent (e.g. no MVO) is still a declared segment with all-zero frames rather than a
segment with no frames, which some readers reject. The cost is small: a BINARY frame is
rows*cols/8 bytes (about 29 kB at 480x480), i.e. < 1 MB for a 6-slice, 4-segment result.

Identity: algorithm type AUTOMATIC with Algorithm Identification (name, family "Artificial
Intelligence", version = model card version); Series Number = source * 100 + 1
(`node.encode.numbering`); Series/SOP Instance UIDs come from the caller (derived
deterministically, `node.encode.uids`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from models.measurements import structure_masks
from models.volume import Volume
from node.encode.algorithm import AlgorithmInfo
from node.encode.codes import ALGORITHM_FAMILY_AI, SEGMENT_CONCEPTS
from node.encode.sources import match_sources
from node.encode.uids import ObjectUIDs

__all__ = ["build_segmentation", "segment_masks", "algorithm_identification", "SERIES_DESCRIPTION"]

log = logging.getLogger(__name__)

SERIES_DESCRIPTION = "LGE AI segmentation (research use only)"
CONTENT_LABEL = "LGE_AI_SEG"


def algorithm_identification(algorithm: AlgorithmInfo) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=algorithm.name,
        family=ALGORITHM_FAMILY_AI,
        version=algorithm.version,
        source=algorithm.source,
        parameters=dict(algorithm.parameters) or None,
    )


def segment_masks(labels: np.ndarray) -> np.ndarray:
    """(n_slices, rows, cols, 4) bool, segment order of `SEGMENT_CONCEPTS`."""
    masks = structure_masks(labels)
    return np.stack([masks[c.key] for c in SEGMENT_CONCEPTS], axis=-1)


def _segment_descriptions(algorithm: AlgorithmInfo) -> list[hd.seg.SegmentDescription]:
    algo = algorithm_identification(algorithm)
    out = []
    for c in SEGMENT_CONCEPTS:
        desc = hd.seg.SegmentDescription(
            segment_number=c.number,
            segment_label=c.label,
            segmented_property_category=c.category,
            segmented_property_type=c.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            anatomic_regions=[c.anatomic_region] if c.anatomic_region is not None else None,
            display_color=hd.color.CIELabColor.from_rgb(*c.display_rgb),
        )
        desc.SegmentDescription = c.description
        out.append(desc)
    return out


def build_segmentation(
    source_datasets: Sequence[Dataset],
    labels: np.ndarray,
    volume: Volume,
    algorithm: AlgorithmInfo,
    uids: ObjectUIDs,
    *,
    series_number: int,
    instance_number: int = 1,
    series_description: str = SERIES_DESCRIPTION,
) -> hd.seg.Segmentation:
    """The SEG of ``labels`` (Volume order) referencing ``source_datasets``."""
    labels = np.asarray(labels)
    if labels.shape != volume.shape:
        raise ValueError(f"labels shape {labels.shape} differs from the volume's {volume.shape}")
    stack = match_sources(source_datasets, volume)
    pixel_array = stack.to_source_frames(segment_masks(labels))
    seg = hd.seg.Segmentation(
        source_images=stack.images,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(algorithm),
        series_instance_uid=uids.series_instance_uid,
        series_number=series_number,
        sop_instance_uid=uids.sop_instance_uid,
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        manufacturer_model_name=algorithm.model_name,
        software_versions=[algorithm.software_version, f"{algorithm.name} {algorithm.version}"],
        device_serial_number=algorithm.device_serial_number,
        content_description="LV cavity, myocardium, infarct and MVO",
        content_label=CONTENT_LABEL,
        omit_empty_frames=False,
    )
    seg.SeriesDescription = series_description[:64]
    log.debug("SEG built: %d frames", int(seg.NumberOfFrames))
    return seg
