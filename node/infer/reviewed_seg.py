"""Reviewed SEGs: a radiologist's edited version of our SEG, sent back to the node.

Recognised (at series completion) as a BINARY SEG whose segments are SEMIAUTOMATIC or MANUAL
and whose Referenced Series is an LGE series the node has processed. Our own AI output and any
other AUTOMATIC SEG are stored and ignored. A reviewed SEG gets a ``remeasure`` job: labels from
the SEG on the source volume -> measurements -> a new TID 1500 SR that references the reviewed
SEG's segments, delivered like any result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.volume import Volume
from node.db.models import Instance, Series, SeriesState

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
# Segment numbers the node writes (node/encode/codes.py): nested masks.
CAVITY, MYOCARDIUM, INFARCT, MVO = 1, 2, 3, 4


@dataclass(frozen=True)
class SegVerdict:
    reviewed: bool
    reason: str
    source_series_uid: str | None = None


def classify(seg: Dataset, known_series: set[str]) -> SegVerdict:
    if str(seg.SOPClassUID) != SEG_SOP_CLASS:
        return SegVerdict(False, "not a SEG")
    if str(seg.get("SegmentationType", "")) != "BINARY":
        return SegVerdict(False, f"SEG type {seg.get('SegmentationType')} is not BINARY")
    types = {str(s.get("SegmentAlgorithmType", "")) for s in seg.get("SegmentSequence", [])}
    if not types or types == {"AUTOMATIC"}:
        return SegVerdict(False, "automatic SEG (AI output): stored, not processed")
    refs = [str(r.SeriesInstanceUID) for r in seg.get("ReferencedSeriesSequence", [])]
    source = next((r for r in refs if r in known_series), None)
    if source is None:
        return SegVerdict(False, "edited SEG of a series this node has not processed")
    numbers = {int(s.SegmentNumber) for s in seg.SegmentSequence}
    if not {CAVITY, MYOCARDIUM, INFARCT} <= numbers:
        return SegVerdict(False, f"edited SEG lacks the node's segments 1-3 (has {sorted(numbers)})")
    return SegVerdict(True, f"reviewed SEG of series {source}: re-measure", source)


def read_seg(path: Path) -> Dataset:
    return dcmread(path)


def classify_stored(session: Session, store_root: Path, seg_series_uid: str) -> tuple[SegVerdict, Dataset | None]:
    """Read the (single) SEG instance of a stored series and classify it against the LGE series
    this node has processed. Used when the series completes and again when its job runs.

    Returns
    -------
    tuple[SegVerdict, pydicom.dataset.Dataset | None]
        The verdict, and the SEG when it could be read.
    """
    paths = list(session.scalars(select(Instance.path).where(Instance.series_uid == seg_series_uid)))
    if len(paths) != 1:
        return SegVerdict(False, f"{len(paths)} SEG instances in one series: expected one"), None
    try:
        seg = read_seg(store_root / paths[0])
    except Exception as exc:  # unreadable file: say so rather than crash the sweep or the job
        return SegVerdict(False, f"SEG could not be read: {type(exc).__name__}"), None
    refs = [str(r.SeriesInstanceUID) for r in seg.get("ReferencedSeriesSequence", [])]
    known = set(session.scalars(select(Series.series_uid).where(Series.series_uid.in_(refs),
                                                                 Series.state == SeriesState.SELECTED)))
    return classify(seg, known), seg


def labels_from_seg(seg: Dataset, volume: Volume) -> np.ndarray:
    """The 0-4 label volume (on ``volume``'s grid and slice order) encoded by a node-style SEG."""
    import highdicom as hd

    s = hd.seg.Segmentation.from_dataset(seg, copy=False)
    refs = [uid for uid, _frame in volume.source_refs]
    if any(frame is not None for _uid, frame in volume.source_refs):
        raise ValueError("re-measuring SEGs of multi-frame sources is not supported yet")
    present = sorted(int(x.SegmentNumber) for x in seg.SegmentSequence)
    masks = s.get_pixels_by_source_instance(refs, segment_numbers=present, assert_missing_frames_are_empty=True,
                                            skip_overlap_checks=True)  # (n, rows, cols, n_segments)
    m = {num: masks[..., i].astype(bool) for i, num in enumerate(present)}
    labels = np.zeros(volume.shape, dtype=np.uint8)
    # Nested segments (MVO ⊂ infarct ⊂ myocardium): paint outer to inner.
    labels[m[CAVITY]] = 1
    labels[m[MYOCARDIUM]] = 2
    labels[m[INFARCT]] = 3
    if MVO in m:
        labels[m[MVO]] = 4
    return labels
