"""Inference requests from a `type: dimse` source against a real Orthanc (its DICOM port): the
study is uploaded to Orthanc only (REST), the node lists it by C-FIND and retrieves it by C-GET,
the C-STORE sub-operations going through the node's ingest path; then SEG + SR. Also: a study
Orthanc does not have, a closed port (retried, then failed), and a retrieval that resumes."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from node.db.models import InferenceRequest, Instance
from tests.conftest import free_port
from tests.node.retrieve.test_dicomweb import queue, record, study_of, upload
from tests.support.orthanc import start_orthanc

pytestmark = [pytest.mark.orthanc]


def source(port: int, **kw) -> dict:  # type: ignore[no-untyped-def]
    return {"type": "dimse", "name": "pacs", "host": "127.0.0.1", "port": port, "ae_title": "ORTHANC",
            "retry_backoff_seconds": 0.05, "timeout_seconds": 10, **kw}


def runner_for(node_config, port: int, **kw):  # type: ignore[no-untyped-def]
    from node.config import NodeConfig
    from node.core import build_core
    from node.retrieve.dicomweb import RequestRunner

    sources = NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "sources": [source(port, **kw)]}).sources
    cfg = node_config().model_copy(update={"sources": sources})
    core = build_core(cfg)
    return core, RequestRunner(core.sessions, core.store, cfg.sources, owner=cfg.dicom.ae_title)


@pytest.fixture
def orthanc(tmp_path: Path):  # type: ignore[no-untyped-def]
    # The node's AE (LGENODE at 127.0.0.1) is a known modality: C-FIND and C-GET are allowed.
    server = start_orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


def test_dimse_source_config_is_validated() -> None:
    from pydantic import ValidationError

    from node.config import DimseSourceConfig, NodeConfig

    cfg = NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "sources": [source(4242), {"type": "dicomweb", "name": "web",
                                                                 "url": "http://pacs/dicom-web"}]})
    assert isinstance(cfg.sources[0], DimseSourceConfig) and cfg.sources[0].port == 4242
    with pytest.raises(ValidationError, match="url"):
        NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "sources": [{**source(4242), "url": "http://x"}]})
    with pytest.raises(ValidationError):
        NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "sources": [source(4242, ae_title="THIS AE TITLE IS FAR TOO LONG")]})
    with pytest.raises(ValidationError, match="type"):
        NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "sources": [{**source(4242), "type": "cmove"}]})


def test_study_not_on_the_source_fails_with_the_reason(node_config, orthanc) -> None:  # type: ignore[no-untyped-def]
    core, runner = runner_for(node_config, orthanc.dicom_port)
    rid = queue(core, "1.2.826.0.1.3680043.8.498.999999")
    assert runner.run_due() == 1
    r = record(core, rid)
    assert r.state == "failed"
    assert r.reason == "study 1.2.826.0.1.3680043.8.498.999999 not found on source 'pacs' (C-FIND lists no series)"
    assert list(r.stages) == ["queued", "querying", "failed"]
    assert runner.run_due() == 0
    core.engine.dispose()


def test_closed_port_is_retried_with_backoff_then_fails(node_config, study_series) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    core, runner = runner_for(node_config, port, max_attempts=3, retry_backoff_seconds=0.2, max_backoff_seconds=0.3)
    study, _ = study_of(sorted(study_series["lge"].glob("*.dcm")))
    rid = queue(core, study)
    assert runner.run_due() == 1
    r = record(core, rid)
    assert r.state == "querying" and r.attempts == 1
    assert r.reason.startswith(f"attempt 1 of 3 failed, retrying in 0.2 s: source 'pacs': cannot connect to "
                               f"127.0.0.1:{port}"), r.reason
    assert runner.run_due() == 0  # not due before its backoff
    tries, deadline = 1, time.time() + 10
    while record(core, rid).state != "failed" and time.time() < deadline:
        tries += runner.run_due()
        time.sleep(0.05)
    r = record(core, rid)
    assert tries == 3 and r.state == "failed" and r.attempts == 3
    assert r.reason.startswith("source 'pacs' failed 3 time(s) in a row; last error: source 'pacs': cannot connect")
    core.engine.dispose()


def test_c_get_retrieves_the_study_and_resumes_without_storing_anything_twice(node_config, orthanc, study_series) -> None:  # type: ignore[no-untyped-def]
    from node.receive.header import parse_header

    lge = sorted(study_series["lge"].glob("*.dcm"))
    upload(orthanc, lge)
    core, runner = runner_for(node_config, orthanc.dicom_port)
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
    with core.sessions.begin() as s:
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
    assert sorted(ingested) == sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                                      for f in lge[len(half):])
    with core.sessions() as s:
        assert s.query(Instance).filter_by(series_uid=series).count() == len(lge)
    assert len(list(core.files.root.rglob("*.dcm"))) == len(lge)
    # The stored pixels are the ones Orthanc holds.
    stored = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(p) for p in core.files.root.rglob("*.dcm"))}
    src = pydicom.dcmread(lge[-1])
    assert stored[str(src.SOPInstanceUID)].pixel_array.tobytes() == src.pixel_array.tobytes()
    rid2 = queue(core, study)  # a second request for the same study fetches nothing
    ingested.clear()
    runner.run_due()
    assert ingested == [] and record(core, rid2).instances_already_stored == len(lge)
    core.engine.dispose()


def test_whole_study_by_c_get_in_one_series_request(node_config, orthanc, study_series, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lge = sorted(study_series["lge"].glob("*.dcm"))
    cine = sorted(study_series["cine"].glob("*.dcm"))
    study, _ = study_of(lge)
    # A CT image in the same study (another SOP class, another series): not part of the plan.
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.StudyInstanceUID, ct.SeriesInstanceUID = study, generate_uid()
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ct_file = tmp_path / "ct.dcm"
    ct.save_as(ct_file, enforce_file_format=True)
    upload(orthanc, lge + cine + [ct_file])
    core, runner = runner_for(node_config, orthanc.dicom_port)
    rid = queue(core, study)
    t0 = time.perf_counter()
    assert runner.run_due() == 1
    elapsed = time.perf_counter() - t0
    r = record(core, rid)
    assert r.state in ("stored", "processing"), r.reason
    n = len(lge) + len(cine)
    assert r.instances_expected == n == r.instances_retrieved and r.instances_already_stored == 0
    assert len(r.found_series) == 2
    with core.sessions() as s:
        assert s.query(Instance).filter_by(study_uid=study).count() == n
    print(f"C-GET: {n} instances in {elapsed:.2f} s ({n / elapsed:.1f} instances/s, incl. C-FIND)")
    core.engine.dispose()


@pytest.mark.slow
def test_inference_request_by_c_get_is_processed_and_delivered_by_c_store(node_config, study_series, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dicomweb_client.api import DICOMwebClient

    from node.config import NodeConfig
    from node.db.models import Delivery
    from node.service import NodeService
    from tests.node.test_e2e_orthanc import check_results, weights_dir

    orthanc = start_orthanc(tmp_path / "orthanc")
    try:
        lge = sorted(study_series["lge"].glob("*.dcm"))
        cine = sorted(study_series["cine"].glob("*.dcm"))
        upload(orthanc, lge + cine)
        base = node_config(series={"idle_seconds": 1.0, "sweep_interval_seconds": 0.3},
                           delivery={"retry_backoff_seconds": 1.0, "sweep_interval_seconds": 0.5},
                           model={"weights_dir": str(weights_dir())} if weights_dir() else {},
                           retrieve={"sweep_interval_seconds": 0.5})
        # A PACS without DICOMweb on the node's side: pulled by C-GET, results sent back by C-STORE.
        extra = NodeConfig.model_validate({
            "dicom": {"allow_any_peer": True},
            "destinations": [{"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": orthanc.dicom_port,
                              "ae_title": "ORTHANC"}],
            "sources": [source(orthanc.dicom_port)]})
        cfg = base.model_copy(update={"destinations": extra.destinations, "sources": extra.sources})
        service = NodeService(cfg)
        service.start()
        try:
            study, lge_series = study_of(lge)
            rid = queue(service.core, study, transaction_id="ris-dimse")
            deadline = time.time() + 300
            r = record(service.core, rid)
            while time.time() < deadline and r.state not in ("done", "failed"):
                time.sleep(0.5)
                r = record(service.core, rid)
            assert r.state == "done", (r.state, r.reason)
            assert r.instances_expected == len(lge) + len(cine) == r.instances_retrieved
            assert {"queued", "querying", "retrieving", "stored", "done"} <= set(r.stages)
            assert {"seg", "sr"} <= {o["kind"] for o in r.results}
            client = DICOMwebClient(orthanc.dicomweb_url)  # only to look at what Orthanc now holds
            check_results(client, study, lge_series)
            in_orthanc = {i["00080018"]["Value"][0] for i in client.search_for_instances(study_instance_uid=study)}
            assert {o["sop_instance_uid"] for o in r.results} <= in_orthanc
            with service.core.sessions() as s:
                assert {d.destination for d in s.query(Delivery)} == {"pacs"}
        finally:
            service.stop()
    finally:
        orthanc.stop()


@pytest.fixture
def dcmqrscp(tmp_path: Path, study_series):  # type: ignore[no-untyped-def]
    """DCMTK's dcmqrscp as the PACS, holding the synthetic LGE series (indexed by dcmqridx).
    dcmqrscp has no bind-address option: it listens on every interface for the test's duration,
    answering only the AE titles of its config (the node's, LGENODE at localhost: dcmqrscp takes host names, not addresses)."""
    import shutil
    import socket
    import subprocess

    from tests.conftest import dcmtk_env, which_dcmtk

    db = tmp_path / "qrdb"
    db.mkdir()
    files = [Path(shutil.copy(f, db / f.name)) for f in sorted(study_series["lge"].glob("*.dcm"))]
    subprocess.run([which_dcmtk("dcmqridx"), str(db), *map(str, files)], check=True, env=dcmtk_env(), timeout=60)
    port = free_port()
    cfg = tmp_path / "dcmqrscp.cfg"
    cfg.write_text(f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 4\n"
                   f"HostTable BEGIN\nlgenode = (LGENODE, localhost, 11112)\nHostTable END\n"
                   "VendorTable BEGIN\nVendorTable END\n"
                   f"AETable BEGIN\nDCMQRSCP {db} R (200, 1024mb) lgenode\nAETable END\n")
    proc = subprocess.Popen([which_dcmtk("dcmqrscp"), "-c", str(cfg), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtk_env())
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("dcmqrscp did not start")
    yield port, files
    proc.terminate()
    proc.wait(10)


def test_c_get_from_dcmtk_dcmqrscp(node_config, dcmqrscp) -> None:  # type: ignore[no-untyped-def]
    port, files = dcmqrscp
    core, runner = runner_for(node_config, port, ae_title="DCMQRSCP")
    study, series = study_of(files)
    rid = queue(core, study)
    assert runner.run_due() == 1
    r = record(core, rid)
    assert r.state == "stored", r.reason
    assert r.found_series == [series] and r.instances_expected == len(files) == r.instances_retrieved
    with core.sessions() as s:
        assert s.query(Instance).filter_by(series_uid=series).count() == len(files)
    # An unknown study: dcmqrscp's C-FIND finds nothing.
    rid2 = queue(core, "1.2.826.0.1.3680043.8.498.424242")
    assert runner.run_due() == 1
    assert record(core, rid2).reason == ("study 1.2.826.0.1.3680043.8.498.424242 not found on source 'pacs' "
                                         "(C-FIND lists no series)")
    core.engine.dispose()


@pytest.mark.slow
def test_source_going_down_mid_c_get_is_retried_and_continues(node_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from dicomstudy.synthetic import write_synthetic_long_series

    files = sorted(write_synthetic_long_series(150, tmp_path / "series", seed=7))
    study, series = study_of(files)
    orthanc = start_orthanc(tmp_path / "orthanc")
    try:
        upload(orthanc, files)
        core, runner = runner_for(node_config, orthanc.dicom_port, retry_backoff_seconds=0.1, timeout_seconds=5)
        rid = queue(core, study)
        t = threading.Thread(target=runner.run_due)
        t.start()
        deadline = time.time() + 60
        while record(core, rid).instances_retrieved < 20 and t.is_alive() and time.time() < deadline:
            time.sleep(0.01)
        # The PACS dies in the middle of the C-GET (SIGKILL: a graceful stop lets Orthanc finish it).
        assert orthanc.process is not None
        orthanc.process.kill()
        orthanc.process.wait(10)
        orthanc.process = None
        t.join(60)
        r = record(core, rid)
        assert r.state == "retrieving" and r.attempts == 1, (r.state, r.reason)
        assert 20 <= r.instances_retrieved < len(files)
        assert r.reason.startswith("attempt 1 of 5 failed, retrying in 0.1 s: C-GET (SERIES) on source 'pacs': "), r.reason
        orthanc.start()
        time.sleep(0.15)
        ingested: list[str] = []
        real = core.store.ingest

        def counting(header, data, ae):  # type: ignore[no-untyped-def]
            res = real(header, data, ae)
            ingested.append(header.sop_instance_uid)
            assert not res.duplicate, "an instance already stored was retrieved and stored again"
            return res

        core.store.ingest = counting  # type: ignore[method-assign]
        assert runner.run_due() == 1
        r = record(core, rid)
        assert r.state == "stored" and r.attempts == 0 and r.reason is None, r.reason
        assert r.instances_retrieved == len(files) and len(ingested) == len(files) - r.instances_already_stored
        with core.sessions() as s:
            assert s.query(Instance).filter_by(series_uid=series).count() == len(files)
        assert len([p for p in core.files.root.rglob("*.dcm") if p.parent.name == series]) == len(files)
        core.engine.dispose()
    finally:
        orthanc.stop()


def test_c_get_over_dicom_tls(node_config, study_series, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The source's ``tls`` block (the C-STORE destination's client settings) against Orthanc's
    DICOM TLS, which also requires the node's client certificate."""
    from tests.support.pki import LocalCA

    ca = LocalCA(tmp_path / "pki")
    server, client = ca.issue("orthanc"), ca.issue("lgenode")
    orthanc = start_orthanc(tmp_path / "orthanc", extra_config={
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(server.cert), "DicomTlsPrivateKey": str(server.key),
        "DicomTlsTrustedCertificates": str(ca.ca_file), "DicomTlsRemoteCertificateRequired": True})
    try:
        lge = sorted(study_series["lge"].glob("*.dcm"))
        upload(orthanc, lge)
        study, series = study_of(lge)
        tls = {"enabled": True, "ca_file": str(ca.ca_file), "cert_file": str(client.cert), "key_file": str(client.key)}
        core, runner = runner_for(node_config, orthanc.dicom_port, tls=tls)
        rid = queue(core, study)
        assert runner.run_due() == 1
        r = record(core, rid)
        assert r.state == "stored" and r.instances_retrieved == len(lge), r.reason
        core.engine.dispose()
        # Without the client certificate Orthanc refuses the TLS handshake: retried, not stored.
        core, runner = runner_for(node_config, orthanc.dicom_port, tls={"enabled": True, "ca_file": str(ca.ca_file)},
                                  max_attempts=1)
        rid = queue(core, study)
        assert runner.run_due() == 1
        r = record(core, rid)
        assert r.state == "failed" and r.instances_retrieved == 0
        assert r.reason.startswith("source 'pacs' failed 1 time(s) in a row; last error: source 'pacs': "), r.reason
        assert "during negotiation" in r.reason  # the handshake failed, before any DIMSE
        core.engine.dispose()
    finally:
        orthanc.stop()
