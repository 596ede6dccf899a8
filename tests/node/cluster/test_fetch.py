"""node/cluster/fetch.py: a node lacking instance files fetches them from the node that holds them,
over that node's real WADO-RS endpoint (uvicorn on loopback): the stored bytes land at the same
relative path of its own store; an unknown owner, refused credentials, a missing instance or
other bytes than indexed fail the job for good, an owner that cannot be reached is retried."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from node.api.app import create_app
from node.api.auth import Authenticator, sha256_hex
from node.cluster.fetch import IndexedFile, PeerFetcher, PeerUnavailable
from node.cluster.nodes import announce, node_url
from node.config import ClusterConfig
from node.db.models import Instance
from node.job.errors import PermanentError
from node.retrieve.common import ingest_part10
from node.security.settings import AuthConfig
from node.store.files import FileStore
from tests.conftest import free_port
from tests.support.http import serve

KEY = "peer-read-key-0123456789"
KEYS = AuthConfig.model_validate({"api_keys": [{"name": "peer", "key_sha256": sha256_hex(KEY), "roles": ["read"]}]})


@dataclass
class Cluster:
    core: object  # node A's core: its store holds the series; the index is shared
    url: str
    rows: list[IndexedFile]
    b_files: FileStore  # node B's own store (another root)

    def fetcher(self, key: str = KEY) -> PeerFetcher:
        cfg = ClusterConfig(enabled=True, node_name="node-b", url="http://127.0.0.1:1/dicom-web",
                            auth_header=SecretStr(f"Bearer {key}"), timeout_seconds=5)
        return PeerFetcher(self.core.sessions, self.b_files, cfg)  # type: ignore[attr-defined]


@pytest.fixture
def cluster(core, study_series, tmp_path: Path) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    core.files.node_name = "node-a"
    for f in sorted(study_series["lge"].glob("*.dcm")):
        meta = pydicom.dcmread(f, stop_before_pixels=True).file_meta
        ingest_part10(core.store, "TESTSCU", f.read_bytes(), sop_class=str(meta.MediaStorageSOPClassUID),
                      sop=str(meta.MediaStorageSOPInstanceUID), tsx=str(meta.TransferSyntaxUID), source="test")
    with core.sessions() as s:
        rows = [IndexedFile.of(r) for r in s.scalars(select(Instance))]
    assert rows and {r.node for r in rows} == {"node-a"}
    assert all(r.sha256 and len(r.sha256) == 64 for r in rows)  # taken at ingest
    app = create_app(core.sessions, core.files.root, lambda: True, auth=Authenticator(KEYS, {}))
    with serve(app) as base:
        url = f"{base}/dicom-web"
        announce(core.sessions, "node-a", url, starting=True)
        yield Cluster(core, url, rows, FileStore(tmp_path / "b-store", min_free_mb=1, node_name="node-b"))


def test_missing_files_fetched_byte_identical_then_local(cluster: Cluster) -> None:
    assert cluster.fetcher().ensure_local(cluster.rows) == len(cluster.rows)
    a_root = cluster.core.files.root  # type: ignore[attr-defined]
    for r in cluster.rows:
        assert (cluster.b_files.root / r.path).read_bytes() == (a_root / r.path).read_bytes()
        assert hashlib.sha256((a_root / r.path).read_bytes()).hexdigest() == r.sha256
    assert list(cluster.b_files.incoming.iterdir()) == []  # no temp file left behind
    assert cluster.fetcher().ensure_local(cluster.rows) == 0  # already here: nothing fetched again


def test_own_and_unowned_rows_are_not_fetched(cluster: Cluster) -> None:
    rows = [IndexedFile(r.sop_instance_uid, r.study_uid, r.series_uid, r.path, r.size_bytes, node)
            for r, node in zip(cluster.rows, ("node-b", None))]
    assert cluster.fetcher().ensure_local(rows) == 0


def test_owner_never_announced_is_permanent(cluster: Cluster) -> None:
    rows = [IndexedFile(r.sop_instance_uid, r.study_uid, r.series_uid, r.path, r.size_bytes, "node-x")
            for r in cluster.rows[:2]]
    with pytest.raises(PermanentError, match="node 'node-x', which has never announced itself"):
        cluster.fetcher().ensure_local(rows)


def test_refused_credentials_missing_instance_and_other_bytes_are_permanent(cluster: Cluster) -> None:
    with pytest.raises(PermanentError, match=r"HTTP 401 \(check cluster.auth_header\)"):
        cluster.fetcher(key="wrong-key-0123456789").ensure_local(cluster.rows[:1])
    r = cluster.rows[0]
    gone = IndexedFile("1.2.3.4.5", r.study_uid, r.series_uid, r.path.rsplit("/", 1)[0] + "/1.2.3.4.5.dcm", 10, "node-a")
    with pytest.raises(PermanentError, match="HTTP 404"):
        cluster.fetcher().ensure_local([gone])
    wrong_size = IndexedFile(r.sop_instance_uid, r.study_uid, r.series_uid, r.path, r.size_bytes + 1, "node-a")
    with pytest.raises(PermanentError, match="bytes, the index says"):
        cluster.fetcher().ensure_local([wrong_size])
    assert not (cluster.b_files.root / r.path).exists()  # nothing unchecked was kept
    # Same size, same UID, other bytes (a flipped bit on the owner's disk or on the way)
    other = IndexedFile(r.sop_instance_uid, r.study_uid, r.series_uid, r.path, r.size_bytes, "node-a",
                        sha256="0" * 64)
    with pytest.raises(PermanentError, match="SHA-256 mismatch"):
        cluster.fetcher().ensure_local([other])
    assert not (cluster.b_files.root / r.path).exists()
    elsewhere = IndexedFile(r.sop_instance_uid, r.study_uid, r.series_uid, "../../outside.dcm", r.size_bytes, "node-a")
    with pytest.raises(PermanentError, match="not the store's layout"):
        cluster.fetcher().ensure_local([elsewhere])
    assert not (cluster.b_files.root.parent / "outside.dcm").exists()


def test_owner_unreachable_is_retryable(cluster: Cluster) -> None:
    announce(cluster.core.sessions, "node-a", f"http://127.0.0.1:{free_port()}/dicom-web")  # type: ignore[attr-defined]
    with pytest.raises(PeerUnavailable, match=r"node 'node-a' .* node unreachable: .*its last heartbeat was \d+ s ago"):
        cluster.fetcher().ensure_local(cluster.rows)
    assert not isinstance(PeerUnavailable("x"), PermanentError)  # the worker retries it


def test_announce_refreshes_heartbeat_and_url(cluster: Cluster) -> None:
    sessions = cluster.core.sessions  # type: ignore[attr-defined]
    first = node_url(sessions, "node-a")
    assert first is not None and first[0] == cluster.url
    time.sleep(0.01)
    announce(sessions, "node-a", "http://10.0.0.1:8080/dicom-web/")
    url, beat = node_url(sessions, "node-a")  # type: ignore[misc]
    assert url == "http://10.0.0.1:8080/dicom-web" and beat > first[1]
    assert node_url(sessions, "node-z") is None


def test_a_series_comes_in_one_request_and_a_row_the_answer_lacks_is_asked_for_alone(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    urls: list[str] = []
    real_get = PeerFetcher._get

    def counting(self, base, url, what):  # type: ignore[no-untyped-def]
        urls.append(url)
        return real_get(self, base, url, what)

    monkeypatch.setattr(PeerFetcher, "_get", counting)
    assert cluster.fetcher().ensure_local(cluster.rows) == len(cluster.rows)
    assert len(urls) == 1 and urls[0].endswith(f"/series/{cluster.rows[0].series_uid}")

    # A row whose instance the owner no longer has: the series answer lacks it, it is asked for
    # alone (404) and the job fails for good; the rows that came are checked and kept.
    urls.clear()
    r = cluster.rows[0]
    gone_uid = "1.2.826.0.1.3680043.8.498.999"
    gone = IndexedFile(gone_uid, r.study_uid, r.series_uid, cluster.b_files.relpath_for(r.study_uid, r.series_uid, gone_uid),
                       10, "node-a")
    for x in cluster.rows[:3]:
        (cluster.b_files.root / x.path).unlink()
    with pytest.raises(PermanentError, match=r"HTTP 404 \(the owner no longer holds it\)"):
        cluster.fetcher().ensure_local([*cluster.rows[:3], gone])
    assert len(urls) == 2 and urls[1].endswith(f"/instances/{gone_uid}")
    assert all((cluster.b_files.root / x.path).exists() for x in cluster.rows[:3])


def test_a_corrupt_part_in_a_series_answer_fails_the_job(cluster: Cluster) -> None:
    rows = [IndexedFile(r.sop_instance_uid, r.study_uid, r.series_uid, r.path, r.size_bytes, "node-a",
                        "f" * 64 if i == 1 else r.sha256) for i, r in enumerate(cluster.rows)]
    with pytest.raises(PermanentError, match=f"instance {rows[1].sop_instance_uid} of series .*SHA-256 mismatch"):
        cluster.fetcher().ensure_local(rows)
    assert not (cluster.b_files.root / rows[1].path).exists()
