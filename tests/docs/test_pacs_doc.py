"""docs/pacs.md cannot rot silently: every ``yaml`` block loads with the node's config loader,
every ``json`` block parses, the C-STORE routing script is ``docker/route.lua`` verbatim, and a real
Orthanc started with the page's Orthanc settings (the ``json orthanc-config`` blocks) lists the node
as a modality with the permissions shown and, with the page's STOW-RS routing script, pushes a
stable MR series to the node's STOW-RS endpoint with the documented key header; the DICOM TLS block
starts Orthanc with a test CA's certificates in place of the page's paths."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.config import ENV_REF_RE, load_config
from tests.conftest import REPO
from tests.support.http import serve
from tests.support.orthanc import orthanc_available, start_orthanc

DOC = REPO / "docs" / "pacs.md"
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(lang: str, tag: str | None = None) -> list[str]:
    """The bodies of the fenced blocks whose info string starts with ``lang`` (and has ``tag``)."""
    out = []
    for info, body in _FENCE.findall(DOC.read_text(encoding="utf-8")):
        words = info.split()
        if words[:1] == [lang] and (tag is None or tag in words[1:]):
            out.append(body)
    return out


def test_the_page_has_the_snippets_it_promises() -> None:
    assert len(blocks("yaml")) >= 6 and len(blocks("json", "orthanc-config")) >= 3 and len(blocks("lua")) == 2


@pytest.mark.parametrize("snippet", blocks("yaml"), ids=lambda s: s.splitlines()[0][:40])
def test_yaml_snippets_load_with_the_node_config_loader(snippet: str, tmp_path: Path) -> None:
    data = yaml.safe_load(snippet)
    assert isinstance(data, dict) and "dicom" in data, "a node.yaml fragment with its dicom section"
    env = {m.group(1): "x" * 24 for m in ENV_REF_RE.finditer(snippet)}
    path = tmp_path / "node.yaml"
    path.write_text(snippet, encoding="utf-8")
    cfg = load_config(path, environ=env)
    # Each snippet's sections survive validation (nothing silently dropped).
    for section in data:
        assert getattr(cfg, section) is not None


@pytest.mark.parametrize("snippet", blocks("json"), ids=lambda s: s.strip().splitlines()[1][:40])
def test_json_snippets_parse(snippet: str) -> None:
    assert isinstance(json.loads(snippet), dict)


def test_cstore_routing_script_is_the_deployed_one() -> None:
    route = (REPO / "docker" / "route.lua").read_text(encoding="utf-8")
    assert blocks("lua")[0].strip() in route


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        base[k] = _merge(dict(base.get(k) or {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


@pytest.fixture
def stow_node(core) -> Iterator[tuple[Any, str, str]]:  # type: ignore[no-untyped-def]
    """The node's API (STOW-RS in) on loopback, with a key of role ``store`` named "orthanc"."""
    from node.api.app import create_app
    from node.api.auth import Authenticator, sha256_hex
    from node.security.settings import AuthConfig

    key = "orthanc-doc-key-0123456789"
    auth = Authenticator(AuthConfig.model_validate(
        {"api_keys": [{"name": "orthanc", "key_sha256": sha256_hex(key), "roles": ["store"]}]}), {})
    app = create_app(core.sessions, core.files.root, lambda: True, auth=auth, store=core.store)
    with serve(app) as base:
        yield core, f"{base}/dicom-web/", key


@pytest.mark.orthanc
@pytest.mark.skipif(not orthanc_available(), reason="Orthanc with the DICOMweb plugin is not installed")
def test_orthanc_with_the_documented_settings_routes_to_the_node_by_stow(stow_node, study_series,  # type: ignore[no-untyped-def]
                                                                         tmp_path: Path) -> None:
    core, node_url, key = stow_node
    settings: dict[str, Any] = {}
    for body in blocks("json", "orthanc-config"):
        fragment = json.loads(body)
        if "DicomTlsEnabled" not in fragment:  # TLS needs certificates: tests/node/retrieve covers it
            _merge(settings, fragment)
    # Site-specific values replaced by the test's: loopback, free ports, a CA file that exists.
    settings.pop("DicomAet"), settings.pop("DicomPort")
    settings["DicomModalities"]["lgenode"]["Host"] = "127.0.0.1"
    server = settings["DicomWeb"]["Servers"]["lgenode"]
    assert set(server) == {"Url", "HttpHeaders"} and list(server["HttpHeaders"]) == ["X-API-Key"]
    server["Url"], server["HttpHeaders"]["X-API-Key"] = node_url, key
    settings["HttpsCACertificates"] = "/etc/ssl/certs/ca-certificates.crt"
    web = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado", "Host": "127.0.0.1",
           "Ssl": False}
    settings["DicomWeb"] = _merge(web, settings["DicomWeb"])
    script = tmp_path / "route-stow.lua"
    script.write_text(blocks("lua")[1], encoding="utf-8")
    modalities = settings.pop("DicomModalities")
    orthanc = start_orthanc(tmp_path / "orthanc", modalities=modalities, lua_scripts=[str(script)],
                            extra_config=settings)
    try:
        known = orthanc.get_json("/modalities?expand")
        assert known["lgenode"]["AET"] == "LGENODE"  # type: ignore[index]
        assert {k: known["lgenode"][k] for k in ("AllowFind", "AllowGet", "AllowStore")} == \
            {"AllowFind": True, "AllowGet": True, "AllowStore": True}  # type: ignore[index]
        assert orthanc.get_json("/dicom-web/servers") == ["lgenode"]
        lge = sorted(study_series["lge"].glob("*.dcm"))
        for f in lge:  # the study reaches Orthanc; the Lua script routes it once stable
            urllib.request.urlopen(urllib.request.Request(orthanc.url + "/instances", data=f.read_bytes(),
                                                          method="POST"), timeout=30).read()
        from node.db.models import Instance

        deadline = time.time() + 60
        while True:
            with core.sessions() as s:
                rows = s.query(Instance).all()
            if len(rows) == len(lge) or time.time() > deadline:
                break
            time.sleep(0.5)
        assert len(rows) == len(lge), orthanc.log_path.read_text(errors="replace")[-2000:]
        assert {r.calling_ae for r in rows} == {"orthanc"}  # the key's name: the documented header was sent
    finally:
        orthanc.stop()


@pytest.mark.orthanc
@pytest.mark.skipif(not orthanc_available(), reason="Orthanc with the DICOMweb plugin is not installed")
def test_orthanc_starts_with_the_documented_tls_settings(tmp_path: Path) -> None:
    """The DICOM TLS block, with the page's paths replaced by a test CA's files: Orthanc starts
    with them and marks the node's modality for TLS."""
    from tests.support.pki import LocalCA

    [tls] = [json.loads(b) for b in blocks("json", "orthanc-config") if "DicomTlsEnabled" in json.loads(b)]
    ca = LocalCA(tmp_path / "pki")
    server = ca.issue("orthanc")
    files = {"DicomTlsCertificate": server.cert, "DicomTlsPrivateKey": server.key,
             "DicomTlsTrustedCertificates": ca.ca_file}
    assert set(files) <= set(tls)
    tls.update({k: str(v) for k, v in files.items()})
    modalities = tls.pop("DicomModalities")
    modalities["lgenode"]["Host"] = "127.0.0.1"
    orthanc = start_orthanc(tmp_path / "orthanc", modalities=modalities, extra_config=tls)
    try:
        known = orthanc.get_json("/modalities?expand")
        assert known["lgenode"]["UseDicomTls"] is True and known["lgenode"]["AET"] == "LGENODE"  # type: ignore[index]
    finally:
        orthanc.stop()
