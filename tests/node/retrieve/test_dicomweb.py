"""Inference requests against a real Orthanc (DICOMweb plugin): the study is uploaded to Orthanc
only (its REST API), the node retrieves it by QIDO-RS + WADO-RS into its store through the
C-STORE ingest path, and the usual jobs produce SEG + SR (delivered back by STOW-RS). Also: a
study Orthanc does not have, a source that is down, and a retrieval that resumes."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
import requests as http

from node.db.models import InferenceRequest, Instance
from tests.conftest import free_port
from tests.support.orthanc import start_orthanc

pytestmark = [pytest.mark.orthanc]

KEY = "ris-key-0123456789abcdef"


def upload(orthanc, files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """Put files into Orthanc by its REST API (POST /instances), not through the node."""
    for f in files:
        req = urllib.request.Request(orthanc.url + "/instances", data=f.read_bytes(), method="POST",
                                     headers={"Content-Type": "application/dicom"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200


def source(url: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    return {"type": "dicomweb", "name": "pacs", "url": url, "retry_backoff_seconds": 0.05, **kw}


def runner_for(node_config, url: str, **kw):  # type: ignore[no-untyped-def]
    from node.config import DicomwebSourceConfig
    from node.core import build_core
    from node.retrieve.dicomweb import RequestRunner

    cfg = node_config().model_copy(update={"sources": [DicomwebSourceConfig.model_validate(source(url, **kw))]})
    core = build_core(cfg)
    return core, RequestRunner(core.sessions, core.store, cfg.sources)


def queue(core, study: str, **kw) -> int:  # type: ignore[no-untyped-def]
    from node.api.requests import InferenceRequestIn, queue_request

    return queue_request(core.sessions, InferenceRequestIn(study_uid=study, source="pacs", **kw), "test")


def record(core, rid: int) -> InferenceRequest:  # type: ignore[no-untyped-def]
    with core.sessions() as s:
        r = s.get(InferenceRequest, rid)
        assert r is not None
        return r


def study_of(files: list[Path]) -> tuple[str, str]:
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


@pytest.fixture
def orthanc(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = start_orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


def test_study_not_on_the_source_fails_with_the_reason(node_config, orthanc) -> None:  # type: ignore[no-untyped-def]
    core, runner = runner_for(node_config, orthanc.dicomweb_url)
    rid = queue(core, "1.2.826.0.1.3680043.8.498.999999")
    assert runner.run_due() == 1
    r = record(core, rid)
    assert r.state == "failed"
    assert r.reason == "study 1.2.826.0.1.3680043.8.498.999999 not found on source 'pacs' (QIDO-RS lists no series)"
    assert list(r.stages) == ["queued", "querying", "failed"]
    assert runner.run_due() == 0  # final: not tried again


def test_source_down_is_retried_with_backoff_then_fails(node_config, study_series) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    core, runner = runner_for(node_config, f"http://127.0.0.1:{port}/dicom-web", max_attempts=3,
                              retry_backoff_seconds=0.2, max_backoff_seconds=0.3, timeout_seconds=5)
    study, _ = study_of(sorted(study_series["lge"].glob("*.dcm")))
    rid = queue(core, study)
    assert runner.run_due() == 1
    r = record(core, rid)
    assert r.state == "querying" and r.attempts == 1
    assert r.reason.startswith("attempt 1 of 3 failed, retrying in 0.2 s: QIDO-RS series of the study on source "
                               "'pacs': ConnectionError")
    assert runner.run_due() == 0  # not due before its backoff
    tries = 1
    deadline = time.time() + 10
    while record(core, rid).state != "failed" and time.time() < deadline:
        tries += runner.run_due()
        time.sleep(0.05)
    r = record(core, rid)
    assert tries == 3 and r.state == "failed" and r.attempts == 3
    assert r.reason.startswith("source 'pacs' failed 3 time(s) in a row; last error: QIDO-RS series of the study "
                               "on source 'pacs': ConnectionError")
    assert r.instances_retrieved == 0


def test_retrieval_resumes_without_storing_anything_twice(node_config, orthanc, study_series) -> None:  # type: ignore[no-untyped-def]
    from node.receive.header import parse_header

    lge = sorted(study_series["lge"].glob("*.dcm"))
    upload(orthanc, lge)
    core, runner = runner_for(node_config, orthanc.dicomweb_url)
    study, series = study_of(lge)
    # A first attempt stored part of the series before the node died: those are in the index.
    half = lge[: len(lge) // 2]
    for f in half:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        data = f.read_bytes()
        h = parse_header(data, affected_sop_class=str(ds.SOPClassUID), affected_sop_instance=str(ds.SOPInstanceUID),
                         transfer_syntax=str(ds.file_meta.TransferSyntaxUID))
        assert not core.store.ingest(h, data, "STORESCU").duplicate
    rid = queue(core, study, series_uids=[series])
    with core.sessions.begin() as s:  # ... in the middle of its retrieval
        s.get(InferenceRequest, rid).state = "retrieving"
    assert runner.recover() == 1
    ingested: list[str] = []
    real = core.store.ingest

    def counting(header, data, ae):  # type: ignore[no-untyped-def]
        res = real(header, data, ae)
        ingested.append(header.sop_instance_uid)
        assert not res.duplicate, "an instance already stored was fetched and stored again"
        return res

    core.store.ingest = counting  # type: ignore[method-assign]
    assert runner.run_due() == 1
    r = record(core, rid)
    assert r.state == "stored", r.reason
    assert r.instances_expected == len(lge) and r.instances_retrieved == len(lge)
    assert r.instances_already_stored == len(half) and len(ingested) == len(lge) - len(half)
    assert r.found_series == [series]
    with core.sessions() as s:
        assert s.query(Instance).filter_by(series_uid=series).count() == len(lge)
    assert len(list((core.files.root).rglob("*.dcm"))) == len(lge)
    # A second request for the same study fetches nothing.
    rid2 = queue(core, study)
    ingested.clear()
    runner.run_due()
    assert ingested == [] and record(core, rid2).instances_already_stored == len(lge)
    core.engine.dispose()


@pytest.mark.slow
def test_inference_request_over_the_api_retrieves_processes_and_delivers(node_config, study_series, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from node.api.auth import sha256_hex
    from node.config import NodeConfig
    from node.service import NodeService
    from tests.node.test_e2e_orthanc import check_results, weights_dir
    from dicomweb_client.api import DICOMwebClient

    orthanc = start_orthanc(tmp_path / "orthanc")
    try:
        lge = sorted(study_series["lge"].glob("*.dcm"))
        cine = sorted(study_series["cine"].glob("*.dcm"))
        upload(orthanc, lge + cine)
        api_port = free_port()
        base = node_config(series={"idle_seconds": 1.0, "sweep_interval_seconds": 0.3},
                           delivery={"retry_backoff_seconds": 1.0, "sweep_interval_seconds": 0.5},
                           model={"weights_dir": str(weights_dir())} if weights_dir() else {},
                           api={"enabled": True, "port": api_port,
                                "auth": {"api_keys": [{"name": "ris", "key_sha256": sha256_hex(KEY),
                                                       "roles": ["request", "read"]}]}},
                           retrieve={"sweep_interval_seconds": 0.5})
        extra = NodeConfig.model_validate({"dicom": {"allow_any_peer": True},
                                           "destinations": [{"type": "stow", "name": "pacs-web", "url": orthanc.dicomweb_url},
                                                            # not named by the request: gets nothing
                                                            {"type": "stow", "name": "archive",
                                                             "url": f"http://127.0.0.1:{free_port()}/dicom-web"}],
                                           "sources": [source(orthanc.dicomweb_url)]})
        cfg = base.model_copy(update={"destinations": extra.destinations, "sources": extra.sources})
        service = NodeService(cfg)
        service.start()
        try:
            api = f"http://127.0.0.1:{api_port}"
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    if http.get(api + "/health", timeout=2).ok:
                        break
                except http.ConnectionError:
                    time.sleep(0.2)
            study, lge_series = study_of(lge)
            body = {"study_uid": study, "source": "pacs", "transaction_id": "ris-1", "destinations": ["pacs-web"]}
            assert http.post(api + "/api/inference-requests", json=body, timeout=10).status_code == 401
            r = http.post(api + "/api/inference-requests", json=body, headers={"X-API-Key": KEY}, timeout=10)
            assert r.status_code == 202, r.text
            rid = r.json()["id"]
            deadline = time.time() + 300
            got: dict = {}
            while time.time() < deadline:
                got = http.get(f"{api}/api/inference-requests/{rid}", headers={"X-API-Key": KEY}, timeout=10).json()
                if got["state"] in ("done", "failed"):
                    break
                time.sleep(0.5)
            assert got["state"] == "done", got
            assert got["instances_expected"] == len(lge) + len(cine) == got["instances_retrieved"]
            assert set(got["stages"]) >= {"queued", "querying", "retrieving", "stored", "processing", "done"}
            kinds = {o["kind"] for o in got["results"]}
            assert {"seg", "sr"} <= kinds and all(o["series_uid"] and o["sop_instance_uid"] for o in got["results"])
            assert got["principal"] == "ris" and got["reason"] is None
            # SEG + SR (and PDF) were delivered to Orthanc by STOW-RS, and are the ones the request names.
            client = DICOMwebClient(orthanc.dicomweb_url)
            check_results(client, study, lge_series)
            in_orthanc = {i["00080018"]["Value"][0] for i in client.search_for_instances(study_instance_uid=study)}
            assert {o["sop_instance_uid"] for o in got["results"]} <= in_orthanc
            from node.db.models import Delivery

            with service.core.sessions() as s:
                assert {d.destination for d in s.query(Delivery)} == {"pacs-web"}
        finally:
            service.stop()
    finally:
        orthanc.stop()


def test_a_series_being_retrieved_is_not_completed_while_its_source_is_retried(node_config) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from node.core import build_core
    from node.db.models import Series, utcnow
    from node.series.completion import sweep

    cfg = node_config()
    core = build_core(cfg)
    study = "1.2.826.0.1.3680043.8.498.5"
    old = utcnow() - timedelta(seconds=60)
    with core.sessions.begin() as s:
        s.add(Series(series_uid=study + ".1", study_uid=study, state="receiving", n_instances=3,
                     first_received_at=old, last_received_at=old))
    rid = queue(core, study)
    with core.sessions.begin() as s:
        r = s.get(InferenceRequest, rid)
        r.state, r.found_series = "retrieving", [study + ".1"]
    sweep(core.sessions, cfg)
    with core.sessions() as s:
        assert s.get(Series, study + ".1").state == "receiving"
    with core.sessions.begin() as s:  # the source stayed down: the request failed
        s.get(InferenceRequest, rid).state = "failed"
    sweep(core.sessions, cfg)
    with core.sessions() as s:
        assert s.get(Series, study + ".1").state == "ignored"  # completed, judged like any other series
    core.engine.dispose()


@pytest.mark.slow
def test_source_going_down_mid_retrieval_is_retried_and_continues(node_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from dicomstudy.synthetic import write_synthetic_long_series

    files = sorted(write_synthetic_long_series(120, tmp_path / "series", seed=7))
    study, series = study_of(files)
    orthanc = start_orthanc(tmp_path / "orthanc")
    try:
        upload(orthanc, files)
        core, runner = runner_for(node_config, orthanc.dicomweb_url, retry_backoff_seconds=0.1, timeout_seconds=5)
        rid = queue(core, study)
        t = threading.Thread(target=runner.run_due)
        t.start()
        deadline = time.time() + 60
        while record(core, rid).instances_retrieved < 20 and t.is_alive() and time.time() < deadline:
            time.sleep(0.01)
        orthanc.stop()  # the network fault: the source disappears mid-retrieval
        t.join(60)
        r = record(core, rid)
        assert r.state == "retrieving" and r.attempts == 1, (r.state, r.reason)
        assert 20 <= r.instances_retrieved < len(files)
        assert r.reason.startswith("attempt 1 of 5 failed, retrying in 0.1 s: WADO-RS instance ")
        assert "from source 'pacs': " in r.reason  # then the error (connection refused or reset)
        orthanc.start()  # back
        time.sleep(0.15)
        assert runner.run_due() == 1
        r = record(core, rid)
        assert r.state == "stored" and r.attempts == 0 and r.reason is None
        assert r.instances_retrieved == len(files) and 20 <= r.instances_already_stored < len(files)
        with core.sessions() as s:
            assert s.query(Instance).filter_by(series_uid=series).count() == len(files)
        assert len([p for p in core.files.root.rglob("*.dcm") if p.parent.name == series]) == len(files)
        core.engine.dispose()
    finally:
        orthanc.stop()


class _CuttingProxy:
    """A loopback HTTP proxy in front of the real Orthanc that, for series-level WADO-RS, sends
    the first ``keep(answer)`` bytes of Orthanc's answer and closes the connection (no Content-Length, so
    the client sees an ordinary end of body): a stream cut short without any error."""

    def __init__(self, upstream: str, keep: Callable[[bytes], int]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept",)}
                up = http.get(upstream + self.path, headers=headers, timeout=30)
                body = up.content
                path = self.path.split("?")[0].rstrip("/")
                series_level = "/series/" in path and path.rsplit("/", 2)[-2] == "series"
                if series_level:
                    proxy.cut += 1
                    body = body[:keep(body)]
                self.send_response(up.status_code)
                self.send_header("Content-Type", up.headers.get("Content-Type", "application/octet-stream"))
                if not series_level:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.cut = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _inside_part_headers(body: bytes) -> int:
    """Just after the 4th part's boundary line: its MIME headers are cut."""
    boundary = body[: body.index(b"\r\n")]
    at = -1
    for _ in range(4):
        at = body.index(boundary, at + 1)
    return at + len(boundary) + 10


@pytest.mark.parametrize("where", ["mid-image", "inside part headers"])
def test_a_series_stream_cut_short_stores_no_truncated_image(node_config, orthanc, study_series, where) -> None:  # type: ignore[no-untyped-def]
    """The series comes in one streamed WADO-RS answer, cut short without an error: in the middle
    of an image (dicomweb-client yields the truncated part), or inside a part's headers (it raises
    while decoding). The complete parts are stored; the rest is asked for one by one; no image
    is stored truncated."""
    lge = sorted(study_series["lge"].glob("*.dcm"))
    upload(orthanc, lge)
    study, series = study_of(lge)
    keep = (lambda body: int(len(body) * 0.45)) if where == "mid-image" else _inside_part_headers
    proxy = _CuttingProxy(orthanc.url, keep=keep)
    try:
        core, runner = runner_for(node_config, proxy.url + "/dicom-web")
        rid = queue(core, study, series_uids=[series])
        assert runner.run_due() == 1
        r = record(core, rid)
        assert proxy.cut == 1
        assert r.state == "stored", r.reason
        assert r.instances_retrieved == len(lge) and r.instances_already_stored == 0
        for f in lge:
            sent = pydicom.dcmread(f)
            stored = pydicom.dcmread(core.files.root / core.files.relpath_for(study, series, str(sent.SOPInstanceUID)))
            assert stored.PixelData == sent.PixelData
        core.engine.dispose()
    finally:
        proxy.close()
