"""Two real `lgenode serve` processes on one real PostgreSQL, each with its OWN storage.root
(``cluster.enabled``): node A receives LGE series by C-STORE (DCMTK storescu) and runs no worker;
node B runs the worker, fetches the series from A's WADO-RS, processes it and delivers SEG + SR
to a DCMTK storescp. B's copies are A's bytes, A's store is untouched, the results stay on B and
only B sends them. Then A is stopped while B needs its files: the job attempt fails with a clear
"unreachable" reason, is retried by the queue, and completes once A is back."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
import pytest
from sqlalchemy import select

from node.db.models import ClusterNode, Delivery, Instance, Job
from node.db.session import make_engine, session_factory, upgrade
from tests.conftest import free_port
from tests.support.wait import wait_for
from tests.node.job.test_postgres_shared_queue import drop_everything
from tests.support.dicom_peers import dcmtk, storescp
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LGENODE = str(Path(sys.executable).with_name("lgenode"))
KEY = "cluster-peer-key-0123456789"  # the read role on both nodes: peers and this test use it
SEG, SR = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34"


def write_config(folder: Path, name: str, pg: str, dicom_port: int, api_port: int, pacs_port: int,
                 workers: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "node.yaml"
    cfg.write_text(f"""
dicom:
  ae_title: {name.upper().replace("-", "")}
  port: {dicom_port}
  allowed_peers: [{{ae_title: STORESCU}}]
storage: {{root: store, min_free_mb: 1}}
database: {{url: "{pg}"}}
series: {{idle_seconds: 2, sweep_interval_seconds: 0.3}}
jobs: {{workers: {workers}, poll_interval_seconds: 0.2, retry_backoff_seconds: 0.5, max_attempts: 10}}
model: {{write_report: false}}
destinations:
  - {{type: cstore, name: pacs, host: 127.0.0.1, port: {pacs_port}, ae_title: PACS}}
delivery: {{retry_backoff_seconds: 0.5, max_backoff_seconds: 1, sweep_interval_seconds: 0.5}}
api:
  port: {api_port}
  auth:
    api_keys: [{{name: peer, key_sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", roles: [read]}}]
cluster:
  enabled: true
  node_name: {name}
  url: "http://127.0.0.1:{api_port}/dicom-web"
  auth_header: "Bearer ${{PEER_KEY}}"
  timeout_seconds: 10
  heartbeat_seconds: 1
""")
    return cfg


class Node:
    def __init__(self, cfg: Path, api_port: int, dicom_port: int) -> None:
        self.cfg, self.api_port, self.dicom_port = cfg, api_port, dicom_port
        self.log = cfg.parent / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def store(self) -> Path:
        return self.cfg.parent / "store"

    def start(self) -> None:
        import os

        env = dict(os.environ, PEER_KEY=KEY)
        self.proc = subprocess.Popen([LGENODE, "serve", "--config", str(self.cfg)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited: {self.log.read_text()[-3000:]}")
            try:
                self.get("/health")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"node did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def get(self, path: str) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", headers={"X-API-Key": KEY})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())


def snapshot(store: Path) -> dict[str, str]:
    """relative path -> sha256 of every stored file (the .incoming temp folder left out)."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*.dcm")) if ".incoming" not in p.parts}


def send(node: Node, folder: Path) -> str:
    files = sorted(folder.glob("*.dcm"))
    r = dcmtk("storescu", "-R", "-aet", "STORESCU", "-aec", node.cfg.read_text().split("ae_title: ")[1].split()[0],
              "127.0.0.1", str(node.dicom_port), *map(str, files))
    assert r.returncode == 0, r.stdout + r.stderr
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def reviewed_seg(ai_seg_path: Path, sources: list[Path], out: Path) -> Path:
    """The AI SEG as a radiologist's reviewed version (SEMIAUTOMATIC, same pixels), in its own folder."""
    import highdicom as hd
    import numpy as np

    from tests.node.infer.test_remeasure import _edited_seg

    ai_ds = pydicom.dcmread(ai_seg_path)
    ai = hd.seg.Segmentation.from_dataset(ai_ds)
    images = [pydicom.dcmread(p) for p in sources]
    numbers = sorted(int(x.SegmentNumber) for x in ai.SegmentSequence)
    masks = ai.get_pixels_by_source_instance([str(d.SOPInstanceUID) for d in images], segment_numbers=numbers,
                                             assert_missing_frames_are_empty=True, skip_overlap_checks=True)
    labels = np.zeros(masks.shape[:3], dtype=np.uint8)
    for i, n in enumerate(numbers):  # nested segments, outer to inner
        labels[masks[..., i].astype(bool)] = n
    out.mkdir(parents=True)
    return _edited_seg(ai_ds, SimpleNamespace(datasets=images), labels, out)


def test_second_node_without_shared_storage_processes_what_the_first_received(
        postgres_url: str, study_series, tmp_path: Path) -> None:  # noqa: F811
    from dicomstudy.synthetic import write_synthetic_study

    engine = make_engine(postgres_url)
    drop_everything(engine)
    upgrade(engine)
    sessions = session_factory(engine)
    pacs_port = free_port()
    pacs = storescp(pacs_port, tmp_path / "pacs")
    ports = {n: (free_port(), free_port()) for n in ("a", "b")}
    a = Node(write_config(tmp_path / "a", "node-a", postgres_url, *ports["a"], pacs_port, workers=0), *ports["a"][::-1])
    b = Node(write_config(tmp_path / "b", "node-b", postgres_url, *ports["b"], pacs_port, workers=1), *ports["b"][::-1])
    try:
        a.start()
        b.start()
        with sessions() as s:
            assert {n.name: n.url for n in s.scalars(select(ClusterNode))} == {
                "node-a": f"http://127.0.0.1:{a.api_port}/dicom-web", "node-b": f"http://127.0.0.1:{b.api_port}/dicom-web"}

        # 1. A receives; B fetches, processes, delivers.
        series = send(a, study_series["lge"])
        received_on_a = snapshot(a.store)
        assert len(received_on_a) == len(list(study_series["lge"].glob("*.dcm")))
        job = wait_for(lambda: [j for j in b.get(f"/api/jobs?series_uid={series}") if j["state"] in ("done", "failed")],
                       300, "the job on node B")[0]
        assert job["state"] == "done", job
        with sessions() as s:
            rows = list(s.scalars(select(Instance).where(Instance.series_uid == series)))
            results = list(s.scalars(select(Instance).where(Instance.sop_class_uid.in_([SEG, SR]))))
            worker = s.get(Job, job["id"]).worker  # type: ignore[union-attr]
        assert worker and {r.node for r in rows} == {"node-a"}
        # B's copies are A's files, byte for byte, at the same relative paths.
        on_b = snapshot(b.store)
        assert {r.path: on_b.get(r.path) for r in rows} == {r.path: received_on_a[r.path] for r in rows}
        # The results were written on B, recorded as B's, and are not on A's disk.
        assert {r.sop_class_uid for r in results} == {SEG, SR} and {r.node for r in results} == {"node-b"}
        assert all(r.path in on_b and r.path not in snapshot(a.store) for r in results)

        def delivered() -> list[Delivery]:
            with sessions() as s:
                ds = list(s.scalars(select(Delivery).where(Delivery.job_id == job["id"])))
            return ds if ds and all(d.state == "delivered" for d in ds) else []

        deliveries = wait_for(delivered, 60, "delivery of SEG and SR")
        assert {d.kind for d in deliveries} == {"seg", "sr"} and {d.node for d in deliveries} == {"node-b"}
        at_pacs = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                   for p in (tmp_path / "pacs").iterdir() if p.is_file()}
        assert {r.sop_instance_uid for r in results} <= at_pacs
        # Nothing in A's store changed.
        assert snapshot(a.store) == received_on_a

        # 1b. A reviewed SEG arrives at A: only A's sweep can read it (B skips it), B re-measures it
        # after fetching the SEG from A, and B delivers the new SR.
        edited = reviewed_seg(b.store / next(r.path for r in results if r.sop_class_uid == SEG),
                              sorted(study_series["lge"].glob("*.dcm")), tmp_path / "edited")
        seg_series = send(a, edited.parent)
        remeasure = wait_for(lambda: [j for j in b.get(f"/api/jobs?series_uid={seg_series}")
                                      if j["state"] in ("done", "failed")], 120, "the remeasure job")[0]
        assert remeasure["state"] == "done" and remeasure["kind"] == "remeasure", remeasure
        with sessions() as s:
            seg_row = s.scalars(select(Instance).where(Instance.series_uid == seg_series)).one()
            new_sr = [o["sop_instance_uid"] for o in remeasure["result"]["objects"] if o["kind"] == "sr"]
            sr_rows = list(s.scalars(select(Instance).where(Instance.sop_instance_uid.in_(new_sr))))
        assert seg_row.node == "node-a" and (b.store / seg_row.path).read_bytes() == (a.store / seg_row.path).read_bytes()
        assert len(sr_rows) == 1 and sr_rows[0].node == "node-b"
        wait_for(lambda: sr_rows[0].sop_instance_uid in {
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (tmp_path / "pacs").iterdir()},
            60, "the re-measured SR at the PACS")
        received_on_a = snapshot(a.store)  # now with the reviewed SEG

        # 2. A down while B needs its files: the attempt fails with a clear reason and is retried.
        second = tmp_path / "second"
        write_synthetic_study(second, seed=2, with_cine=False)
        series2 = send(a, second / "LGE_SAX")
        a.stop()

        def failed_attempt() -> dict[str, Any] | None:
            found = b.get(f"/api/jobs?series_uid={series2}")
            return found[0] if found and found[0]["attempts"] >= 1 and found[0]["reason"] else None

        retried = wait_for(failed_attempt, 120, "a failed attempt of the second job")
        assert retried["state"] in ("queued", "running"), retried
        assert "node 'node-a'" in retried["reason"] and "unreachable" in retried["reason"], retried["reason"]
        assert retried["reason"].startswith("load: PeerUnavailable"), retried["reason"]
        a.start()
        job2 = wait_for(lambda: [j for j in b.get(f"/api/jobs?series_uid={series2}") if j["state"] in ("done", "failed")],
                        300, "the second job after node A came back")[0]
        assert job2["state"] == "done" and job2["attempts"] >= 2, job2
    finally:
        b.stop()
        a.stop()
        pacs.kill()
        pacs.wait(timeout=10)
        drop_everything(engine)
        engine.dispose()
