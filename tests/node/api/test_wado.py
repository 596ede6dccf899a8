"""WADO-RS out (node/api/wado.py): the synthetic LGE series stored in a node, retrieved with
dicomweb-client from a real uvicorn on loopback: the stored bytes, 401/403 without the read role,
404 for unknown or mismatched UIDs, 406 for a transfer syntax the node would have to transcode to,
and the audit record of what was sent."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from sqlalchemy import select

from node.api.app import create_app
from node.api.auth import Authenticator, sha256_hex
from node.api.wado import acceptable
from node.db.models import Instance
from node.retrieve.common import ingest_part10
from node.security.audit import AuditLog
from node.security.settings import AuthConfig
from tests.support.http import serve

READER, STORER = "reader-key-0123456789", "pacs-store-key-0123456789"
KEYS = AuthConfig.model_validate({"api_keys": [
    {"name": "peer-reader", "key_sha256": sha256_hex(READER), "roles": ["read"]},
    {"name": "pacs-store", "key_sha256": sha256_hex(STORER), "roles": ["store"]},
]})
ELE, JPEG_BASELINE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"


@dataclass
class Served:
    url: str
    study: str
    series: str
    files: dict[str, bytes]  # SOP Instance UID -> stored bytes
    audit: Path
    tsx: str

    def client(self, key: str = READER) -> DICOMwebClient:
        return DICOMwebClient(self.url, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
def served(core, study_series, tmp_path: Path) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    for f in sorted(study_series["lge"].glob("*.dcm")):
        meta = pydicom.dcmread(f, stop_before_pixels=True).file_meta
        ingest_part10(core.store, "TESTSCU", f.read_bytes(), sop_class=str(meta.MediaStorageSOPClassUID),
                      sop=str(meta.MediaStorageSOPInstanceUID), tsx=str(meta.TransferSyntaxUID), source="test")
    with core.sessions() as s:
        rows = list(s.scalars(select(Instance)))
    first = rows[0]
    files = {r.sop_instance_uid: (core.files.root / r.path).read_bytes() for r in rows if r.series_uid == first.series_uid}
    audit = tmp_path / "audit.jsonl"
    app = create_app(core.sessions, core.files.root, lambda: True, auth=Authenticator(KEYS, {}), audit=AuditLog(audit))
    with serve(app) as base:
        yield Served(f"{base}/dicom-web", first.study_uid, first.series_uid, files, audit,
                     first.transfer_syntax_uid)


def test_instance_bytes_identical_to_stored_file(served: Served) -> None:
    sop, stored = next(iter(served.files.items()))
    parts = served.client().retrieve_bulkdata(f"{served.url}/studies/{served.study}/series/{served.series}/instances/{sop}")
    assert parts == [stored]


def test_series_retrieved_as_datasets_and_bytes(served: Served) -> None:
    datasets = served.client().retrieve_series(served.study, served.series)
    assert {str(d.SOPInstanceUID) for d in datasets} == set(served.files)
    assert all(str(d.SeriesInstanceUID) == served.series for d in datasets)
    parts = served.client().retrieve_bulkdata(f"{served.url}/studies/{served.study}/series/{served.series}")
    assert sorted(parts) == sorted(served.files.values())


def test_transfer_syntax_star_or_stored_accepted_other_406(served: Served) -> None:
    sop = next(iter(served.files))
    url = f"{served.url}/studies/{served.study}/series/{served.series}/instances/{sop}"
    auth = {"Authorization": f"Bearer {READER}"}
    for tsx in ("*", served.tsx):
        r = requests.get(url, headers={**auth, "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={tsx}'})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        assert f"transfer-syntax={served.tsx}".encode() in r.content
    other = JPEG_BASELINE if served.tsx != JPEG_BASELINE else ELE
    r = requests.get(url, headers={**auth, "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={other}'})
    assert r.status_code == 406 and "does not transcode" in r.json()["detail"]
    r = requests.get(url, headers={**auth, "Accept": "application/dicom+json"})  # metadata: not served
    assert r.status_code == 406


def test_unknown_or_mismatched_uids_404(served: Served) -> None:
    sop = next(iter(served.files))
    auth = {"Authorization": f"Bearer {READER}"}
    for path in (f"studies/{served.study}/series/1.2.3.4.5",
                 f"studies/1.2.3.4.5/series/{served.series}",  # series of another study
                 f"studies/{served.study}/series/{served.series}/instances/1.2.3.4.5",
                 f"studies/1.2.3.4.5/series/{served.series}/instances/{sop}"):
        assert requests.get(f"{served.url}/{path}", headers=auth).status_code == 404, path


def test_file_not_on_this_disk_404(served: Served, core) -> None:  # type: ignore[no-untyped-def]
    """A row whose file another cluster node holds is not served here."""
    sop = next(iter(served.files))
    with core.sessions.begin() as s:
        row = s.get(Instance, sop)
        row.node = "node-b"
        path = core.files.root / row.path
    path.unlink()
    r = requests.get(f"{served.url}/studies/{served.study}/series/{served.series}/instances/{sop}",
                     headers={"Authorization": f"Bearer {READER}"})
    assert r.status_code == 404 and "node-b" in r.json()["detail"]


def test_credentials_and_read_role_required(served: Served) -> None:
    url = f"{served.url}/studies/{served.study}/series/{served.series}"
    assert requests.get(url).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer not-a-key-at-all-000"}).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {STORER}"}).status_code == 403


def test_audited_as_instances_transferred_to_the_caller(served: Served) -> None:
    served.client().retrieve_series(served.study, served.series)
    deadline = time.time() + 10
    while True:
        found = [r for r in map(json.loads, served.audit.read_text().splitlines()) if r["EventID"]["code"] == "110104"]
        if found or time.time() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == 1
    rec = found[0]
    assert rec["EventActionCode"] == "R"
    text = json.dumps(rec)
    assert "peer-reader" in text and served.study in text
    assert all(sop in text for sop in served.files)


def test_accept_parsing() -> None:
    assert acceptable(None, {ELE}) and acceptable("*/*", {ELE})
    assert acceptable('multipart/related; type="application/dicom"', {ELE})
    assert acceptable("multipart/related; type=application/dicom; transfer-syntax=*", {ELE, JPEG_BASELINE})
    assert acceptable(f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}, '
                      'multipart/related; type="application/dicom"; transfer-syntax=*', {ELE})
    assert not acceptable(f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}', {ELE})
    assert not acceptable(f'multipart/related; type="application/dicom"; transfer-syntax={ELE}', {ELE, JPEG_BASELINE})
    assert not acceptable('multipart/related; type="application/octet-stream"', {ELE})
    assert not acceptable("application/json", {ELE})


def test_qido_lists_the_series_instances_with_retrieve_urls(served: Served) -> None:
    client = served.client()
    found = client.search_for_instances(study_instance_uid=served.study, series_instance_uid=served.series)
    assert {f["00080018"]["Value"][0] for f in found} == set(served.files)
    assert {f["0020000E"]["Value"][0] for f in found} == {served.series}
    assert sorted(f["00200013"]["Value"][0] for f in found) == list(range(1, len(served.files) + 1))
    url = found[0]["00081190"]["Value"][0]
    assert client.retrieve_bulkdata(url) == [served.files[found[0]["00080018"]["Value"][0]]]
    assert client.search_for_instances(study_instance_uid=served.study, series_instance_uid="1.2.3.4.5") == []
    assert requests.get(f"{served.url}/studies/{served.study}/series/{served.series}/instances").status_code == 401
