"""Prometheus metrics (served by the API at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

INSTANCES_RECEIVED = Counter("lgenode_instances_received_total", "C-STORE requests answered", ["outcome"])
STOW_INSTANCES = Counter("lgenode_stow_instances_total", "Instances received by STOW-RS, by outcome", ["outcome"])
STORE_SECONDS = Histogram(
    "lgenode_store_seconds", "Time to validate, write (fsync) and index one instance",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
)
ASSOCIATIONS = Counter("lgenode_associations_total", "Association requests", ["outcome"])
SERIES_COMPLETED = Counter("lgenode_series_completed_total", "Series completed", ["decision"])
JOBS = Counter("lgenode_jobs_total", "Job state transitions", ["state"])
JOB_SECONDS = Histogram("lgenode_job_seconds", "Job duration by stage", ["stage"])
QUEUE_DEPTH = Gauge("lgenode_jobs_queued", "Jobs waiting to run")
FREE_BYTES = Gauge("lgenode_storage_free_bytes", "Free bytes on the storage volume")
REVIEWS = Counter("lgenode_reviews_total", "Review decisions recorded", ["decision"])
DUPLICATE_CONFLICTS = Counter("lgenode_duplicate_conflicts_total",
                              "Instances re-sent under a stored SOP Instance UID with different content (first kept)")
QUARANTINED_FILES = Counter("lgenode_quarantined_files_total",
                            "Unreadable files moved out of the store into quarantine/ at start-up")
PEER_FETCHED_BYTES = Counter("lgenode_cluster_fetched_bytes_total",
                             "Bytes of instance files fetched from other cluster nodes (WADO-RS)")
WADO_INSTANCES = Counter("lgenode_wado_instances_total", "Instances served by WADO-RS")
