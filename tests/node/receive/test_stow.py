"""STOW-RS in (node/receive/stow.py): the synthetic study sent with dicomweb-client to a real HTTP
server on loopback (and, for malformed requests, with the FastAPI test client); stored through
the SCP's durable path, answered per PS3.18, authenticated with the ``store`` role, audited."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import select

from node.api.app import create_app
from node.api.auth import Authenticator, sha256_hex
from node.config import StowReceiveConfig
from node.db.models import Instance, Job, Series, utcnow
from node.security.audit import AuditLog
from node.security.settings import AuthConfig
from tests.support.http import serve

STORER, READER, ADMIN = "pacs-store-key-0123456789", "reader-key-0123456789", "admin-key-0123456789"
KEYS = AuthConfig.model_validate({"api_keys": [
    {"name": "pacs-store", "key_sha256": sha256_hex(STORER), "roles": ["store"]},
    {"name": "reader", "key_sha256": sha256_hex(READER), "roles": ["read"]},
    {"name": "ops", "key_sha256": sha256_hex(ADMIN), "roles": ["admin"]},
]})
BEARER = {"Authorization": f"Bearer {STORER}"}
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"  # not a class the node accepts
A900, C000, A700, X0122, C122 = 0xA900, 0xC000, 0xA700, 0x0122, 0xC122


@dataclass
class Node:
    core: object
    url: str  # DICOMweb root
    audit: Path

    def client(self, key: str = STORER) -> DICOMwebClient:
        return DICOMwebClient(self.url, headers={"Authorization": f"Bearer {key}"})

    def transfers(self, n: int) -> list[dict]:
        """The first ``n`` "DICOM Instances Transferred" records (the middleware writes each one
        just after its response is sent, so they are waited for)."""
        deadline = time.time() + 10
        while True:
            found = [r for r in map(json.loads, self.audit.read_text().splitlines()) if r["EventID"]["code"] == "110104"]
            if len(found) >= n or time.time() > deadline:
                assert len(found) >= n, found
                return found[:n]
            time.sleep(0.05)


def make_app(core, audit: Path, stow: StowReceiveConfig | None = None):  # type: ignore[no-untyped-def]
    return create_app(core.sessions, core.files.root, lambda: True, auth=Authenticator(KEYS, {}),
                      audit=AuditLog(audit), store=core.store, stow=stow)


@pytest.fixture
def node(core, tmp_path: Path) -> Iterator[Node]:  # type: ignore[no-untyped-def]
    """The API (with STOW-RS) served by uvicorn on 127.0.0.1: a real HTTP server."""
    audit = tmp_path / "audit.jsonl"
    with serve(make_app(core, audit)) as base:
        yield Node(core, f"{base}/dicom-web", audit)


def lge(study_series: dict[str, Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in sorted(study_series["lge"].glob("*.dcm"))]


def uids(seq) -> set[str]:  # type: ignore[no-untyped-def]
    return {str(i.ReferencedSOPInstanceUID) for i in seq}


def reasons(ds: pydicom.Dataset) -> dict[str, int]:
    return {str(i.ReferencedSOPInstanceUID): int(i.FailureReason) for i in ds.get("FailedSOPSequence", [])}


def multipart(parts: list[tuple[bytes, str | None]], boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    """A multipart/related body (for requests dicomweb-client cannot make: non-DICOM parts, cut bodies)."""
    out = b""
    for data, ctype in parts:
        out += f"--{boundary}\r\n".encode() + (f"Content-Type: {ctype}\r\n".encode() if ctype else b"") + b"\r\n"
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


def test_all_stored_200_files_index_rows_and_audit(node: Node, study_series) -> None:  # type: ignore[no-untyped-def]
    datasets = lge(study_series)
    resp = node.client().store_instances(datasets)
    assert uids(resp.ReferencedSOPSequence) == {str(d.SOPInstanceUID) for d in datasets}
    assert "FailedSOPSequence" not in resp
    assert {str(i.ReferencedSOPClassUID) for i in resp.ReferencedSOPSequence} == {str(datasets[0].SOPClassUID)}
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    with node.core.sessions() as s:  # type: ignore[attr-defined]
        rows = list(s.scalars(select(Instance).where(Instance.series_uid == series)))
        ser = s.get(Series, series)
    assert len(rows) == len(datasets) and {r.calling_ae for r in rows} == {"pacs-store"}
    for r in rows:  # the bytes as sent, under the store's layout
        assert (node.core.files.root / r.path).is_file() and r.path.startswith(f"{study}/{series}/")  # type: ignore[attr-defined]
    assert ser is not None and ser.state == "receiving" and ser.n_instances == len(datasets)
    assert ser.series_description == str(datasets[0].SeriesDescription)
    rec = node.transfers(1)
    assert rec[0]["EventActionCode"] == "C" and rec[0]["EventOutcomeIndicator"] == 0
    who = rec[0]["ActiveParticipant"][0]
    assert who["UserID"] == "pacs-store" and who["RoleIDCode"]["displayName"] == "Source Role ID"
    obj = rec[0]["ParticipantObjectIdentification"][0]
    assert obj["ParticipantObjectID"] == study and obj["ParticipantObjectDetail"]["stored"] == len(datasets)
    assert rec[0]["Detail"]["counts"] == {"stored": len(datasets), "duplicates": 0, "refused": 0}


def test_mixed_good_and_bad_is_202_with_a_reason_per_failed_instance(node: Node, study_series) -> None:  # type: ignore[no-untyped-def]
    good = lge(study_series)[:3]
    no_pixels = lge(study_series)[3]
    del no_pixels.PixelData  # an MR image without pixel data: 0xA900, as the SCP answers
    ct = lge(study_series)[4]
    ct.SOPClassUID = CT_IMAGE
    ct.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    resp = node.client().store_instances([*good, no_pixels, ct])
    assert uids(resp.ReferencedSOPSequence) == {str(d.SOPInstanceUID) for d in good}
    assert reasons(resp) == {str(no_pixels.SOPInstanceUID): A900, str(ct.SOPInstanceUID): X0122}
    with node.core.sessions() as s:  # type: ignore[attr-defined]
        stored = set(s.scalars(select(Instance.sop_instance_uid)))
    assert stored == {str(d.SOPInstanceUID) for d in good}
    rec = node.transfers(1)[0]
    assert rec["EventOutcomeIndicator"] == 4 and rec["Detail"]["refused_by_status"] == {"0xA900": 1, "0x0122": 1}
    # The HTTP status itself: 202.
    body, headers = multipart([(open(study_series["lge"] / sorted(p.name for p in study_series["lge"].glob("*.dcm"))[5],
                                     "rb").read(), "application/dicom"), (b"not dicom at all", "application/dicom")])
    r = requests.post(node.url + "/studies", data=body, headers={**headers, **BEARER}, timeout=30)
    assert r.status_code == 202 and r.headers["content-type"] == "application/dicom+json"
    failed = pydicom.Dataset.from_json(r.json()).FailedSOPSequence
    assert [int(i.FailureReason) for i in failed] == [C000]


def test_none_stored_is_409(node: Node, study_series) -> None:  # type: ignore[no-untyped-def]
    bad = lge(study_series)[:2]
    for d in bad:
        d.SOPClassUID = CT_IMAGE
        d.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    with pytest.raises(requests.HTTPError) as err:
        node.client().store_instances(bad)
    assert err.value.response.status_code == 409
    ds = pydicom.Dataset.from_json(err.value.response.json())
    assert set(reasons(ds).values()) == {X0122} and "ReferencedSOPSequence" not in ds
    # A transfer syntax the SCP would not negotiate: 0xC122.
    raw = sorted(study_series["lge"].glob("*.dcm"))[0].read_bytes()
    tsx = str(pydicom.dcmread(sorted(study_series["lge"].glob("*.dcm"))[0]).file_meta.TransferSyntaxUID).encode()
    assert tsx == b"1.2.840.10008.1.2.1"
    body, headers = multipart([(raw.replace(tsx, b"1.2.840.10008.1.2.9", 1), "application/dicom")])
    r = requests.post(node.url + "/studies", data=body, headers={**headers, **BEARER}, timeout=30)
    assert r.status_code == 409
    assert set(reasons(pydicom.Dataset.from_json(r.json())).values()) == {C122}
    assert not list(node.core.files.iter_files())  # type: ignore[attr-defined]


def test_instances_of_another_study_than_the_url_are_refused(node: Node, study_series) -> None:  # type: ignore[no-untyped-def]
    datasets = lge(study_series)[:2]
    study = str(datasets[0].StudyInstanceUID)
    assert node.client().store_instances(datasets[:1], study_instance_uid=study).ReferencedSOPSequence
    with pytest.raises(requests.HTTPError) as err:
        node.client().store_instances(datasets[1:], study_instance_uid=generate_uid())
    assert err.value.response.status_code == 409
    assert reasons(pydicom.Dataset.from_json(err.value.response.json())) == {str(datasets[1].SOPInstanceUID): A900}
    with node.core.sessions() as s:  # type: ignore[attr-defined]
        assert s.get(Instance, str(datasets[1].SOPInstanceUID)) is None
    r = requests.post(node.url + "/studies/not..a.uid", data=b"", headers=BEARER, timeout=10)
    assert r.status_code == 400


def test_duplicates_are_success_and_a_conflicting_copy_keeps_the_first(node: Node, study_series) -> None:  # type: ignore[no-untyped-def]
    datasets = lge(study_series)[:2]
    node.client().store_instances(datasets)
    with node.core.sessions() as s:  # type: ignore[attr-defined]
        path = node.core.files.root / s.get(Instance, str(datasets[0].SOPInstanceUID)).path  # type: ignore[attr-defined,union-attr]
    first = path.read_bytes()
    changed = lge(study_series)[0]
    changed.SeriesDescription = "EDITED"
    resp = node.client().store_instances([*datasets, changed])
    assert len(resp.ReferencedSOPSequence) == 3 and "FailedSOPSequence" not in resp
    assert path.read_bytes() == first  # the first copy is kept
    with node.core.sessions() as s:  # type: ignore[attr-defined]
        assert s.get(Series, str(datasets[0].SeriesInstanceUID)).n_instances == 2  # type: ignore[union-attr]
    rec = node.transfers(2)[1]
    assert rec["Detail"]["counts"] == {"stored": 0, "duplicates": 3, "refused": 0}


def test_storage_below_the_free_space_minimum_is_a700(node: Node, study_series) -> None:  # type: ignore[no-untyped-def]
    node.core.files.min_free_bytes = node.core.files.free_bytes() + 10**12  # type: ignore[attr-defined]
    with pytest.raises(requests.HTTPError) as err:
        node.client().store_instances(lge(study_series)[:2])
    assert err.value.response.status_code == 409
    assert set(reasons(pydicom.Dataset.from_json(err.value.response.json())).values()) == {A700}
    assert not list(node.core.files.iter_files())  # type: ignore[attr-defined]


def test_authentication_and_the_store_role(core, tmp_path: Path, study_series) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(make_app(core, tmp_path / "audit.jsonl"))
    body, headers = multipart([(f.read_bytes(), "application/dicom") for f in sorted(study_series["lge"].glob("*.dcm"))[:1]])
    assert client.post("/dicom-web/studies", content=body, headers=headers).status_code == 401
    r = client.post("/dicom-web/studies", content=body, headers={**headers, "Authorization": f"Bearer {READER}"})
    assert r.status_code == 403 and "'store'" in r.json()["reason"]
    # The store role may store and nothing else; admin may do everything.
    assert client.get("/api/jobs", headers=BEARER).status_code == 403
    assert client.post("/dicom-web/studies", content=body, headers={**headers, **BEARER}).status_code == 200
    assert client.post("/dicom-web/studies", content=body,
                       headers={**headers, "X-API-Key": ADMIN}).status_code == 200
    api = client.get("/openapi.json", headers={"X-API-Key": ADMIN}).json()  # documented, with its media type
    assert "multipart/related" in json.dumps(api["paths"]["/dicom-web/studies/{study}"]["post"]["requestBody"])
    alerts = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sum(1 for a in alerts if a["EventID"]["code"] == "110113") == 3


def test_malformed_requests_400_415_413(core, tmp_path: Path, study_series) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(make_app(core, tmp_path / "audit.jsonl", StowReceiveConfig(max_body_mb=1)),
                        headers=BEARER)
    one = sorted(study_series["lge"].glob("*.dcm"))[0].read_bytes()
    body, headers = multipart([(one, "application/dicom")])
    for ctype in ("application/dicom", "application/json", 'multipart/related; type="application/dicom+json"; boundary=x',
                  "multipart/form-data; boundary=b0undary"):
        assert client.post("/dicom-web/studies", content=body, headers={"Content-Type": ctype}).status_code == 415, ctype
    no_boundary = {"Content-Type": 'multipart/related; type="application/dicom"'}
    assert client.post("/dicom-web/studies", content=body, headers=no_boundary).status_code == 400
    assert client.post("/dicom-web/studies", content=b"just bytes", headers=headers).status_code == 400
    cut = body[: len(body) // 2]  # a body cut short: no instance stored, 400
    r = client.post("/dicom-web/studies", content=cut, headers=headers)
    assert r.status_code == 400 and r.json()["stored_before_the_error"] == 0
    assert not list(core.files.iter_files())
    big, _ = multipart([(one, "application/dicom")] * (2 * 1024 * 1024 // len(one) + 1))
    r = client.post("/dicom-web/studies", content=big, headers=headers)  # Content-Length over the limit
    assert r.status_code == 413
    # Chunked (no Content-Length): refused when the limit is crossed.
    r = client.post("/dicom-web/studies", content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                    headers=headers)
    assert r.status_code == 413
    # A part that is not application/dicom is failed, the others stored.
    body2, headers2 = multipart([(one, "application/dicom"), (b"{}", "application/json")])
    r = client.post("/dicom-web/studies", content=body2, headers=headers2)
    assert r.status_code == 202


def test_lge_series_received_by_stow_is_completed_selected_and_processed(node: Node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dicomstudy.synthetic import write_synthetic_study
    from node.deliver.outbox import Outbox
    from node.job.queue import JobQueue
    from node.job.stages import build_stages
    from node.job.worker import Worker
    from node.series.completion import sweep

    core = node.core
    study = write_synthetic_study(tmp_path / "study", seed=8, with_cine=False)
    datasets = [pydicom.dcmread(f) for f in study.lge_files]
    resp = node.client().store_instances(datasets, study_instance_uid=str(datasets[0].StudyInstanceUID))
    assert len(resp.ReferencedSOPSequence) == len(datasets)
    assert sweep(core.sessions, core.cfg, now=utcnow() + timedelta(seconds=5)) == [str(datasets[0].SeriesInstanceUID)]  # type: ignore[attr-defined]
    stages = build_stages(core.cfg, Outbox(core.sessions, core.files.root, core.cfg))  # type: ignore[attr-defined]
    worker = Worker(JobQueue(core.sessions), core.sessions, core.files.root, stages=stages, files=core.files)  # type: ignore[attr-defined]
    assert worker.run_once()
    with core.sessions() as s:  # type: ignore[attr-defined]
        job = s.scalar(select(Job))
        assert job is not None and job.state == "done", job and job.reason
        assert s.get(Series, str(datasets[0].SeriesInstanceUID)).state == "selected"  # type: ignore[union-attr]
    kinds = [o["kind"] for o in job.result["objects"]]
    assert kinds[:2] == ["seg", "sr"]
    seg = pydicom.dcmread(core.files.root / next(  # type: ignore[attr-defined]
        i.path for i in _instances(core) if i.sop_instance_uid == job.result["objects"][0]["sop_instance_uid"]))
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == str(datasets[0].SeriesInstanceUID)


def _instances(core) -> list[Instance]:  # type: ignore[no-untyped-def]
    with core.sessions() as s:
        return list(s.scalars(select(Instance)))




def test_stow_can_be_switched_off(core, tmp_path: Path, study_series) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(make_app(core, tmp_path / "audit.jsonl", StowReceiveConfig(enabled=False)), headers=BEARER)
    body, headers = multipart([(sorted(study_series["lge"].glob("*.dcm"))[0].read_bytes(), "application/dicom")])
    assert client.post("/dicom-web/studies", content=body, headers=headers).status_code == 404
    assert not list(core.files.iter_files())
