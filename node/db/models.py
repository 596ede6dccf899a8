"""Database tables. The schema itself is created and migrated by Alembic (node/db/migrations)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC: SQLite has no time zones, so every timestamp is stored as naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime()}


class Instance(Base):
    """One stored SOP instance. The file under the store root is the source of truth."""

    __tablename__ = "instances"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)  # relative to the store root
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Header fields needed by the series rules (image type, geometry), so that selection does
    # not re-read files.
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The cluster node whose storage.root holds the file (cluster.node_name); None: this node's
    # own store or storage shared by every node (no cluster section). Another node reads it by
    # WADO-RS from that node (node/cluster/fetch.py).
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # SHA-256 of the stored bytes (hex), taken when the file was written: a copy fetched from
    # another node is checked against it. None on rows indexed before migration 0007.
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SeriesState:
    RECEIVING = "receiving"
    SELECTED = "selected"  # complete and matched the LGE rules: a job exists
    IGNORED = "ignored"  # complete, not an LGE series (reason says why)
    RESULT = "result"  # our own output or another derived object (SEG/SR/PDF): stored, not processed


class Series(Base):
    __tablename__ = "series"

    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_description: Mapped[str | None] = mapped_column(String(128))
    series_number: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=SeriesState.RECEIVING, index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    # Incremented each time a late instance re-opens a completed series.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column()


class JobState:
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # a late instance re-opened the series; a newer revision replaces it


class JobKind:
    SEGMENT = "segment"
    REMEASURE = "remeasure"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("series_uid", "revision", name="uq_jobs_series_revision"),
        Index("ix_jobs_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series_uid: Mapped[str] = mapped_column(String(64), ForeignKey("series.series_uid"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # "segment": an LGE series -> SEG + SR + PDF; "remeasure": a reviewed (edited) SEG -> a new SR.
    kind: Mapped[str] = mapped_column(String(16), default=JobKind.SEGMENT, server_default="segment")
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    stage: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    reason: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # attempts used up


class Delivery(Base):
    """One result object to one destination. A retry re-sends the same stored file (same UIDs)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "destination", "sop_instance_uid", name="uq_delivery_object"),
        Index("ix_deliveries_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer, ForeignKey("jobs.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # seg, sr, pdf
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)  # relative to the store root
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
    # The node that wrote the file and so sends it (None: any node, storage shared).
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Review(Base):
    """A radiologist's decision on a job's result (append-only; the newest row is current)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer, ForeignKey("jobs.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # accepted | rejected
    comment: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str | None] = mapped_column(String(128))
    seg_series_uid: Mapped[str | None] = mapped_column(String(64))
    seg_sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    # What the reader saw when deciding (SEG version, SR, figures), as sent by the viewer.
    shown: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RequestState:
    """Stages of an inference request, in order; ``done`` and ``failed`` are final."""

    QUEUED = "queued"
    QUERYING = "querying"  # QIDO-RS: which series and instances the source holds
    RETRIEVING = "retrieving"  # WADO-RS (a series per request) or C-GET, into the store
    STORED = "stored"  # every instance stored; waiting for series completion and selection
    PROCESSING = "processing"  # jobs exist for the selected series
    DONE = "done"
    FAILED = "failed"
    ACTIVE = (QUEUED, QUERYING, RETRIEVING, STORED, PROCESSING)
    RETRIEVAL = (QUEUED, QUERYING, RETRIEVING)


class InferenceRequest(Base):
    """A request to retrieve a study from a configured source and run the usual jobs on it."""

    __tablename__ = "inference_requests"
    __table_args__ = (Index("ix_inference_requests_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str | None] = mapped_column(String(128), index=True)  # the caller's own id
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: every series
    source: Mapped[str] = mapped_column(String(64))
    destinations: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=RequestState.QUEUED)
    # When each stage was entered ({"queued": iso time, "querying": ...}).
    stages: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The series the source listed (QIDO-RS) and that were retrieved.
    found_series: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    instances_expected: Mapped[int | None] = mapped_column(Integer)
    instances_retrieved: Mapped[int] = mapped_column(Integer, default=0)  # stored now or already
    instances_already_stored: Mapped[int] = mapped_column(Integer, default=0)  # skipped: in the index
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    job_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    results: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)  # SEG/SR/PDF UIDs
    reason: Mapped[str | None] = mapped_column(Text)  # failure reason, or the last retried error
    principal: Mapped[str | None] = mapped_column(String(128))  # who asked (API identity or cli:user)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ClusterNode(Base):
    """A node of a cluster without shared storage: where its peers reach its DICOMweb endpoint.
    Written at start-up and refreshed by the node's scheduler (``updated_at`` is its heartbeat)."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)  # DICOMweb base URL, e.g. https://node-a:8080/dicom-web
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
