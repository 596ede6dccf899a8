"""Deterministic UIDs for the objects the node writes.

A retry must re-send the *same* objects, and a re-encode after a crash must not create a second
copy in the PACS: every Series/SOP Instance UID of a result object is therefore derived from
what identifies the result, never drawn at random:

    (job key, object kind, role, version)

- ``job key``: the job id, or the source SeriesInstanceUID when one job per series is the rule.
- ``kind``: ``"seg"``, ``"sr"``, ``"pdf"`` (or any other short tag).
- ``role``: ``"series"`` or ``"instance"`` (distinct UIDs for the series and the object in it).
- ``version``: the algorithm/model version plus the encoder format version, so that a re-run
  with a new model gives new objects (a new series), not a silent overwrite.

The UID is pydicom's ``generate_uid(prefix, entropy_srcs=[...])``: prefix + a decimal hash of
the sources (SHA-512), at most 64 characters. The default prefix is pydicom's root; a site with
its own registered root passes it as ``prefix``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

__all__ = ["ENCODER_FORMAT_VERSION", "ObjectUIDs", "derive_uid", "derive_object_uids"]

# Bump when the encoded content changes in a way that must produce new objects.
ENCODER_FORMAT_VERSION = "1"
_NAMESPACE = "lgenode-result-object"


def derive_uid(job_key: str, kind: str, role: str, version: str, *,
               prefix: str | None = None) -> str:
    """One deterministic UID; the same inputs always give the same UID."""
    if not job_key:
        raise ValueError("job_key must not be empty (it is what makes the UID unique)")
    root = prefix or PYDICOM_ROOT_UID
    if not root.endswith("."):
        root += "."
    return str(generate_uid(prefix=root, entropy_srcs=[
        _NAMESPACE, job_key, kind, role, version, ENCODER_FORMAT_VERSION]))


@dataclass(frozen=True)
class ObjectUIDs:
    series_instance_uid: str
    sop_instance_uid: str


def derive_object_uids(job_key: str, kind: str, version: str, *,
                       prefix: str | None = None) -> ObjectUIDs:
    """Series and SOP Instance UID of one result object."""
    return ObjectUIDs(
        series_instance_uid=derive_uid(job_key, kind, "series", version, prefix=prefix),
        sop_instance_uid=derive_uid(job_key, kind, "instance", version, prefix=prefix),
    )
