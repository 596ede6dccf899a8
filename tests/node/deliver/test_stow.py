"""STOW-RS against Orthanc's DICOMweb plugin; read back with QIDO-RS and WADO-RS."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from node.deliver import StowDestination, deliver
from node.encode.readback import sr_values
from tests.support.orthanc import FRAME_MEDIA_TYPES, needs_orthanc, start_orthanc

pytestmark = [needs_orthanc, pytest.mark.orthanc]


def test_stow_then_qido_and_wado(orthanc, deliver_case) -> None:
    series, objects = deliver_case
    seg, sr, pdf = objects
    results = deliver(objects, StowDestination(orthanc.dicomweb_url))
    assert [r.sop_instance_uid for r in results] == [str(ds.SOPInstanceUID) for ds in objects]
    assert all(r.ok and r.status == 200 for r in results), results

    client = DICOMwebClient(orthanc.dicomweb_url)
    study = str(series.datasets[0].StudyInstanceUID)
    found = client.search_for_series(study_instance_uid=study)
    modalities = sorted(item["00080060"]["Value"][0] for item in found)
    assert modalities == ["DOC", "SEG", "SR"]

    back_sr = client.retrieve_instance(study, str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID))
    assert sr_values(back_sr).structures["infarct"]["volume_ml"] == pytest.approx(
        sr_values(sr).structures["infarct"]["volume_ml"])
    back_pdf = client.retrieve_instance(study, str(pdf.SeriesInstanceUID), str(pdf.SOPInstanceUID))
    assert bytes(back_pdf.EncapsulatedDocument).startswith(b"%PDF")


def test_wado_rs_frames_need_an_explicit_media_type(orthanc, deliver_case) -> None:
    """Measured fact: Orthanc 1.10 / DICOMweb 1.7 answers 400 to a frame request
    without an explicit media type, and serves it with application/octet-stream + explicit VR
    little endian.

    A BINARY SEG is read back as a whole instance here: this Orthanc cannot cut 1-bit frames
    when Columns is not a multiple of 8 ("Bad number of columns for a black-and-white image",
    HTTP 400; the fixture series is 132 columns wide), while frames of a 256-column SEG come back
    fine. Viewers that read SEG through WADO-RS instance/bulk-data retrieval are unaffected.
    """
    series, objects = deliver_case
    mr, seg = series.datasets[0], objects[0]
    assert all(r.ok for r in deliver([mr, seg], StowDestination(orthanc.dicomweb_url)))
    client = DICOMwebClient(orthanc.dicomweb_url)
    uids = (str(mr.StudyInstanceUID), str(mr.SeriesInstanceUID), str(mr.SOPInstanceUID))
    frames = client.retrieve_instance_frames(*uids, frame_numbers=[1], media_types=FRAME_MEDIA_TYPES)
    assert frames[0] == mr.PixelData
    with pytest.raises(requests.HTTPError) as err:
        client.retrieve_instance_frames(*uids, frame_numbers=[1])
    assert err.value.response.status_code == 400
    back = client.retrieve_instance(str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID),
                                    str(seg.SOPInstanceUID))
    np.testing.assert_array_equal(back.pixel_array, seg.pixel_array)


def test_auth_header_is_sent(tmp_path, deliver_case) -> None:
    _, objects = deliver_case
    server = start_orthanc(tmp_path / "pacs", extra_config={
        "AuthenticationEnabled": True, "RegisteredUsers": {"node": "s3cret"}})
    try:
        token = "Basic " + base64.b64encode(b"node:s3cret").decode()
        good = deliver(objects[:1], StowDestination(server.dicomweb_url, auth_header=token))
        assert good[0].ok
        bad = deliver(objects[:1], StowDestination(server.dicomweb_url,
                                                   auth_header="Basic " + base64.b64encode(b"node:no").decode()))
        assert not bad[0].ok and bad[0].status == 401
        assert "s3cret" not in repr(StowDestination(server.dicomweb_url, auth_header=token))
    finally:
        server.stop()


def test_pacs_down_then_back(orthanc, deliver_case) -> None:
    _, objects = deliver_case
    dest = StowDestination(orthanc.dicomweb_url, timeout_s=5)
    orthanc.stop()
    down = deliver(objects, dest)
    assert not any(r.ok for r in down) and all(r.detail for r in down)
    orthanc.start()
    up = deliver(objects, dest)  # the retry re-sends the very same objects
    assert all(r.ok for r in up)
    assert len(orthanc.instances()) == len(objects)
