"""HTTP API (FastAPI): health, Prometheus metrics, jobs and series."""
