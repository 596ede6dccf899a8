"""The API's OpenAPI document as `lgenode serve` mounts it, without a running node (``lgenode openapi``)."""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from node.api.app import create_app
from node.store.files import FileStore
from node.store.ingest import InstanceStore


def build_spec(sources: Collection[str] = (), destinations: Collection[str] = ()) -> dict[str, Any]:
    """The OpenAPI document, STOW-RS in included, built on a throw-away in-memory database and
    store (nothing is served or written)."""
    with tempfile.TemporaryDirectory(prefix="lgenode-openapi-") as tmp:
        sessions = sessionmaker(bind=create_engine("sqlite://"))
        store = InstanceStore(FileStore(Path(tmp), fsync=False), sessions)
        app = create_app(sessions, tmp, lambda: True, store=store, sources=sources, destinations=destinations)
        return app.openapi()
