"""The Storage SCP against real peers: DCMTK storescu/echoscu and pynetdicom."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from sqlalchemy import func, select

from node.db.models import Instance, Series
from tests.conftest import dataset_bytes, dcmtk_env, which_dcmtk

MR = "1.2.840.10008.5.1.4.1.1.4"
# storescu option that proposes (only) a given transfer syntax.
DCMTK_PROPOSE = {
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.51": "-xx",
}


def storescu(port: int, files: list[Path], *, aet: str = "STORESCU", aec: str = "LGENODE",
             extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [which_dcmtk("storescu"), "-aet", aet, "-aec", aec, *(extra or []), "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, env=dcmtk_env(), timeout=120)


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if ".incoming" not in p.parts)


def test_dcmtk_storescu_stores_real_series_byte_identical(scp, core, study_series) -> None:
    files = sorted(study_series["lge"].glob("*.dcm"))
    r = storescu(scp.port, files)
    assert r.returncode == 0, r.stderr
    stored = stored_files(core.files.root)
    assert len(stored) == len(files)
    by_uid = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in stored}
    for f in files:
        uid = dcmread(f, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(by_uid[uid]) == dataset_bytes(f)
        # Layout keyed by validated UIDs.
        ds = dcmread(f, stop_before_pixels=True)
        assert by_uid[uid].relative_to(core.files.root).parts == (ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{uid}.dcm")
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == len(files)
        series = s.get(Series, str(dcmread(files[0]).SeriesInstanceUID))
        assert series is not None and series.n_instances == len(files) and series.state == "receiving"


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "MR_small_implicit.dcm",
                                  "MR_small_bigendian.dcm"])
def test_transfer_syntaxes_stored_as_received(scp, core, name: str, tmp_path: Path) -> None:
    ds = dcmread(get_testdata_file(name))
    # storescu drops trailing padding (FFFC,FFFC) when it sends; compare against a file without it.
    if (0xFFFC, 0xFFFC) in ds:
        del ds[0xFFFC, 0xFFFC]
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds["PixelData"].VR = "OB"  # encapsulated pixel data is OB (some test files say OW)
    src = tmp_path / name
    ds.save_as(src, enforce_file_format=True)
    ts = str(ds.file_meta.TransferSyntaxUID)
    # -R: only the needed SOP class; the flag proposes exactly the file's transfer syntax.
    r = storescu(scp.port, [src], extra=["-R", DCMTK_PROPOSE[ts]])
    assert r.returncode == 0, r.stderr
    [stored] = stored_files(core.files.root)
    assert str(dcmread(stored).file_meta.TransferSyntaxUID) == ts
    assert dataset_bytes(stored) == dataset_bytes(src)


def test_pynetdicom_send_and_duplicate_stored_once(scp, core) -> None:
    from node.send import send_files

    src = Path(get_testdata_file("MR_small.dcm"))
    r1 = send_files([src], host="127.0.0.1", port=scp.port, called_ae="LGENODE")
    r2 = send_files([src], host="127.0.0.1", port=scp.port, called_ae="LGENODE")
    assert (r1.ok, r2.ok) == (1, 1)
    assert len(stored_files(core.files.root)) == 1
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1
        assert s.scalar(select(Series.n_instances)) == 1


def test_echo_dcmtk(scp) -> None:
    r = subprocess.run([which_dcmtk("echoscu"), "-aet", "ECHOSCU", "-aec", "LGENODE", "127.0.0.1", str(scp.port)],
                       capture_output=True, text=True, env=dcmtk_env(), timeout=30)
    assert r.returncode == 0, r.stderr


def test_unknown_calling_ae_rejected_with_reason(scp, core) -> None:
    r = storescu(scp.port, [Path(get_testdata_file("MR_small.dcm"))], aet="INTRUDER")
    assert r.returncode != 0
    assert "Calling AE Title Not Recognized" in r.stderr
    assert stored_files(core.files.root) == []


def test_wrong_called_ae_rejected_with_reason(scp) -> None:
    r = storescu(scp.port, [Path(get_testdata_file("MR_small.dcm"))], aec="SOMEONEELSE")
    assert r.returncode != 0
    assert "Called AE Title Not Recognized" in r.stderr


def test_peer_restricted_to_host(node_config) -> None:
    from node.core import build_core
    from node.receive.scp import StorageSCP

    cfg = node_config(dicom={"allowed_peers": [{"ae_title": "STORESCU", "host": "10.255.255.1"}]})
    core = build_core(cfg)
    server = StorageSCP(cfg.dicom, core.store)
    server.start()
    try:
        r = storescu(server.port, [Path(get_testdata_file("MR_small.dcm"))])
        assert "Calling AE Title Not Recognized" in r.stderr
    finally:
        server.stop()


def test_wrong_sop_class_refused_and_scp_keeps_serving(scp, core) -> None:
    r = storescu(scp.port, [Path(get_testdata_file("CT_small.dcm"))])
    assert r.returncode != 0
    assert "No presentation context" in r.stderr or "No valid Presentation Context" in r.stderr
    assert stored_files(core.files.root) == []
    r = storescu(scp.port, [Path(get_testdata_file("MR_small.dcm"))])
    assert r.returncode == 0, r.stderr


def _send_raw(port: int, path: Path, sop_class: str = MR) -> int:
    """Send a file's bytes as they are (no re-encoding) so that broken datasets reach the SCP."""
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True  # stream the file's dataset bytes verbatim
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", port, ae_title="LGENODE")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)  # a path is streamed from the file without decoding
        return int(status.Status)
    finally:
        assoc.release()
        _config.STORE_SEND_CHUNKED_DATASET = False


def _variant(tmp_path: Path, name: str, mutate) -> Path:  # type: ignore[no-untyped-def]
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    mutate(ds)
    out = tmp_path / name
    ds.save_as(out, enforce_file_format=False)
    return out


def test_refusals_each_with_its_status(scp, core, tmp_path: Path) -> None:
    good = _variant(tmp_path, "good.dcm", lambda ds: None)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) - 3000])

    def no_sop_uid(ds):  # type: ignore[no-untyped-def]
        uid = ds.SOPInstanceUID
        del ds.SOPInstanceUID
        ds.file_meta.MediaStorageSOPInstanceUID = uid

    def bad_series_uid(ds):  # type: ignore[no-untyped-def]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = "../../etc/passwd"

    def bad_sop_uid(ds):  # type: ignore[no-untyped-def]
        ds.SOPInstanceUID = "1.2.03.4"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    assert _send_raw(scp.port, truncated) == 0xC000
    assert _send_raw(scp.port, _variant(tmp_path, "nouid.dcm", no_sop_uid)) == 0xC000
    assert _send_raw(scp.port, _variant(tmp_path, "badseries.dcm", bad_series_uid)) == 0xC001
    assert _send_raw(scp.port, _variant(tmp_path, "badsop.dcm", bad_sop_uid)) == 0xC001
    assert stored_files(core.files.root) == []
    assert not any(core.files.incoming.iterdir())
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0
    # Still serving, and a good instance goes through on the same SCP, byte for byte.
    assert _send_raw(scp.port, good) == 0x0000
    [stored] = stored_files(core.files.root)
    assert dataset_bytes(stored) == dataset_bytes(good)


def test_low_disk_answers_out_of_resources(node_config, tmp_path: Path) -> None:
    from node.core import build_core
    from node.receive.scp import StorageSCP

    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    cfg = node_config(storage={"min_free_mb": free_mb + 1024})
    core = build_core(cfg)
    server = StorageSCP(cfg.dicom, core.store)
    server.start()
    try:
        assert _send_raw(server.port, _variant(tmp_path, "x.dcm", lambda ds: None)) == 0xA700
        assert stored_files(core.files.root) == []
    finally:
        server.stop()


def test_database_failure_answers_out_of_resources_and_leaves_nothing(scp, core, tmp_path: Path) -> None:
    from sqlalchemy import text

    with core.engine.begin() as conn:
        conn.execute(text("DROP TABLE instances"))  # the index is gone: storing cannot be completed
    assert _send_raw(scp.port, _variant(tmp_path, "x.dcm", lambda ds: None)) == 0xA700
    assert stored_files(core.files.root) == []
