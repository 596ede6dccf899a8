"""End to end with a real PACS: Orthanc auto-routes a stable MR series to the node with the
routing script the deployment uses (``docker/route.lua``: Lua OnStableSeries -> C-STORE); the
node segments it and stores SEG + SR + PDF back into Orthanc, where the test reads them with
dicomweb-client (QIDO/WADO) and highdicom. Runs on the synthetic study."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import highdicom as hd
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import REPO, dcmtk_env, free_port, which_dcmtk
from tests.support.orthanc import start_orthanc
from tests.support.wait import wait_for

pytestmark = [pytest.mark.orthanc, pytest.mark.slow]

ROUTE_LUA = REPO / "docker" / "route.lua"  # routes to the modality named "lgenode"
SEG, SR, PDF = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.104.1"


def weights_dir() -> Path | None:
    env = os.environ.get("LGENODE_TEST_WEIGHTS")
    return Path(env) if env else None


def node_cfg(node_config, node_port: int, orthanc, transport: str):  # type: ignore[no-untyped-def]
    from node.config import NodeConfig

    dest = ({"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": orthanc.aet}
            if transport == "cstore" else {"type": "stow", "name": "pacs-web", "url": orthanc.dicomweb_url})
    base = node_config(dicom={"port": node_port, "allowed_peers": [{"ae_title": orthanc.aet, "host": "127.0.0.1"},
                                                                    {"ae_title": "STORESCU"}]},
                       series={"idle_seconds": 1.0, "sweep_interval_seconds": 0.3},
                       delivery={"retry_backoff_seconds": 1.0, "max_backoff_seconds": 2.0, "sweep_interval_seconds": 0.5},
                       model={"weights_dir": str(weights_dir())} if weights_dir() else {})
    return base.model_copy(update={"destinations": NodeConfig.model_validate(
        {"dicom": {"allow_any_peer": True}, "destinations": [dest]}).destinations})


def results_in(client: DICOMwebClient, study_uid: str) -> dict[str, dict]:
    found = {}
    for inst in client.search_for_instances(study_instance_uid=study_uid):
        cls = inst["00080016"]["Value"][0]
        if cls in (SEG, SR, PDF):
            found[cls] = inst
    return found


def check_results(client: DICOMwebClient, study_uid: str, lge_series_uid: str) -> None:
    from node.encode.readback import seg_volumes_ml, sr_values

    found = wait_for(lambda: (r := results_in(client, study_uid)) and len(r) == 3 and r, 180, "SEG, SR and PDF")
    uid = {cls: (i["0020000E"]["Value"][0], i["00080018"]["Value"][0]) for cls, i in found.items()}
    seg_ds = client.retrieve_instance(study_uid, *uid[SEG])
    sr_ds = client.retrieve_instance(study_uid, *uid[SR])
    pdf_ds = client.retrieve_instance(study_uid, *uid[PDF])
    seg = hd.seg.Segmentation.from_dataset(seg_ds)
    assert seg.SegmentationType == "BINARY" and seg.StudyInstanceUID == study_uid
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == lge_series_uid
    assert [s.SegmentAlgorithmType for s in seg.SegmentSequence] == ["AUTOMATIC"] * 4
    values = sr_values(sr_ds)
    vols = seg_volumes_ml(seg_ds)
    for key, ml in vols.items():
        assert values.structures[key]["volume_ml"] == pytest.approx(ml, rel=1e-6, abs=1e-6), key
        assert values.referenced_segments[key][0] == seg.SOPInstanceUID
    assert pdf_ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(pdf_ds.EncapsulatedDocument[:5]) == b"%PDF-"


def test_orthanc_auto_routes_and_receives_seg_sr_pdf(node_config, study_series, tmp_path: Path) -> None:
    from node.service import NodeService

    node_port = free_port()
    orthanc = start_orthanc(tmp_path / "orthanc", modalities={"lgenode": ["LGENODE", "127.0.0.1", node_port],
                                                              "scanner": ["SCANNER", "127.0.0.1", 104]},
                            lua_scripts=[str(ROUTE_LUA)])
    service = NodeService(node_cfg(node_config, node_port, orthanc, "cstore"))
    service.start()
    try:
        lge = sorted(study_series["lge"].glob("*.dcm"))
        cine = sorted(study_series["cine"].glob("*.dcm"))
        # The modality sends the study to the PACS; the PACS routes it on.
        r = subprocess.run([which_dcmtk("storescu"), "-aet", "SCANNER", "-aec", orthanc.aet, "127.0.0.1",
                            str(orthanc.dicom_port), *map(str, lge + cine)],
                           capture_output=True, text=True, env=dcmtk_env(), timeout=120)
        assert r.returncode == 0, r.stderr
        import pydicom

        first = pydicom.dcmread(lge[0], stop_before_pixels=True)
        client = DICOMwebClient(orthanc.dicomweb_url)
        check_results(client, str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
        # The cine series was routed too, and ignored with a reason.
        from node.db.models import Series

        with service.core.sessions() as s:
            states = {x.series_description: (x.state, x.reason) for x in s.query(Series)}
        assert states["CINE SAX"][0] == "ignored"
        assert states["LGE PSIR SAX"][0] == "selected"
    finally:
        service.stop()
        orthanc.stop()


def test_pacs_down_for_a_while_objects_arrive_after(node_config, study_series, tmp_path: Path) -> None:
    from node.service import NodeService

    node_port = free_port()
    orthanc = start_orthanc(tmp_path / "orthanc", modalities={"lgenode": ["LGENODE", "127.0.0.1", node_port]})
    orthanc.stop()  # the PACS goes down before the node has anything to send
    service = NodeService(node_cfg(node_config, node_port, orthanc, "stow"))
    service.start()
    try:
        lge = sorted(study_series["lge"].glob("*.dcm"))
        r = subprocess.run([which_dcmtk("storescu"), "-aec", "LGENODE", "127.0.0.1", str(node_port), *map(str, lge)],
                           capture_output=True, text=True, env=dcmtk_env(), timeout=120)
        assert r.returncode == 0, r.stderr
        from node.db.models import Delivery

        def failed_once() -> bool:
            with service.core.sessions() as s:
                rows = s.query(Delivery).all()
                return len(rows) == 3 and all(d.attempts >= 1 and d.state == "pending" for d in rows)

        wait_for(failed_once, 120, "a failed first delivery")
        orthanc.start()  # the PACS is back
        import pydicom

        first = pydicom.dcmread(lge[0], stop_before_pixels=True)
        check_results(DICOMwebClient(orthanc.dicomweb_url), str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
        with service.core.sessions() as s:
            assert {d.state for d in s.query(Delivery)} == {"delivered"}
    finally:
        service.stop()
        orthanc.stop()


def test_orthanc_pushes_by_stow_rs_and_receives_seg_sr_pdf(node_config, study_series, tmp_path: Path) -> None:
    """Orthanc sends the study to the node by STOW-RS (its DICOMweb "Servers" setting, with an API
    key that has the store role only); the node processes it and stores the results back."""
    import urllib.request

    import pydicom

    from node.api.auth import sha256_hex
    from node.config import ApiConfig
    from node.db.models import Instance
    from node.service import NodeService

    key = "orthanc-stow-key-0123456789"
    api_port = free_port()
    web = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado", "Host": "127.0.0.1",
           "Ssl": False,
           "Servers": {"lgenode": {"Url": f"http://127.0.0.1:{api_port}/dicom-web/", "HttpHeaders": {"X-API-Key": key}}}}
    orthanc = start_orthanc(tmp_path / "orthanc", modalities={}, extra_config={"DicomWeb": web})
    cfg = node_cfg(node_config, free_port(), orthanc, "stow")
    cfg = cfg.model_copy(update={"api": ApiConfig.model_validate(
        {"port": api_port, "auth": {"api_keys": [{"name": "orthanc", "key_sha256": sha256_hex(key), "roles": ["store"]}]}})})
    service = NodeService(cfg)
    service.start()
    try:
        lge = sorted(study_series["lge"].glob("*.dcm"))
        for f in lge:  # the study reaches the PACS (REST upload), not the node
            urllib.request.urlopen(urllib.request.Request(orthanc.url + "/instances", data=f.read_bytes(),
                                                          method="POST"), timeout=30).read()
        assert not list(service.core.files.iter_files())
        (study_id,) = orthanc.get_json("/studies")  # type: ignore[misc]
        req = urllib.request.Request(orthanc.url + "/dicom-web/servers/lgenode/stow", method="POST",
                                     data=json.dumps({"Resources": [study_id]}).encode())
        urllib.request.urlopen(req, timeout=120).read()
        first = pydicom.dcmread(lge[0], stop_before_pixels=True)
        with service.core.sessions() as s:
            rows = s.query(Instance).filter(Instance.series_uid == str(first.SeriesInstanceUID)).all()
        assert len(rows) == len(lge) and {r.calling_ae for r in rows} == {"orthanc"}
        check_results(DICOMwebClient(orthanc.dicomweb_url), str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
    finally:
        service.stop()
        orthanc.stop()
