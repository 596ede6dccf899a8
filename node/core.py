"""The node's core parts built from a config: database, file store and instance store (`build_core`).

Shared by `lgenode serve` (`node.service.NodeService`, which adds the SCP, sweeps, workers and the
HTTP API of `node.api.app`), the admin commands, tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from node.config import NodeConfig
from node.db.session import make_engine, session_factory, upgrade
from node.store.files import FileStore
from node.store.ingest import InstanceStore


@dataclass
class Core:
    cfg: NodeConfig
    engine: Engine
    sessions: sessionmaker[Session]
    files: FileStore
    store: InstanceStore


def build_core(cfg: NodeConfig, *, migrate: bool = True) -> Core:
    engine = make_engine(cfg.database_url, echo=cfg.database.echo)
    if migrate:
        upgrade(engine)
    sessions = session_factory(engine)
    root = cfg.storage_root
    root.mkdir(parents=True, exist_ok=True)
    files = FileStore(root, min_free_mb=cfg.storage.min_free_mb, fsync=cfg.storage.fsync, node_name=cfg.node_name)
    store = InstanceStore(files, sessions, late_policy=cfg.series.late_instance_policy)
    return Core(cfg, engine, sessions, files, store)
