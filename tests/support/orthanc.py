"""A real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) for tests, on loopback.

`start_orthanc(workdir)` writes a JSON config into ``workdir`` (storage and index there too),
picks free ports, starts ``/usr/sbin/Orthanc``, waits until ``GET /system`` answers and returns an
`OrthancServer`; `stop()` terminates it, `start()` starts it again on the same ports and storage
(to simulate a PACS that is down for a while). The `orthanc` fixture does this per test.

Network exposure: Orthanc 1.10 has no bind-address option, so its HTTP and DICOM ports listen
on all interfaces. The config limits what that allows: ``RemoteAccessAllowed: false`` (HTTP
answers loopback clients only) and C-STORE/C-ECHO are accepted only from the AEs listed in
``DicomModalities`` at their host (``DicomCheckModalityHost``), loopback by default.

Orthanc's WADO-RS frame retrieval needs an explicit media type (``application/octet-stream``
with transfer syntax 1.2.840.10008.1.2.1), else it answers 400; `FRAME_MEDIA_TYPES` is that.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.require import missing, requires

ORTHANC_BIN = "/usr/sbin/Orthanc"
PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7",
)
FRAME_MEDIA_TYPES = (("application/octet-stream", "1.2.840.10008.1.2.1"),)


def dicomweb_plugin() -> str | None:
    for p in PLUGIN_CANDIDATES:
        if Path(p).is_file():
            return p
    found = sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")) if Path("/usr/lib/orthanc").is_dir() else []
    return str(found[0]) if found else None


def orthanc_available() -> bool:
    return Path(ORTHANC_BIN).is_file() and dicomweb_plugin() is not None


needs_orthanc = requires("orthanc", "Orthanc with the DICOMweb plugin is not installed")


from tests.conftest import free_port  # noqa: E402  (re-exported for the deliver tests)


@dataclass
class OrthancServer:
    workdir: Path
    http_port: int
    dicom_port: int
    aet: str
    config_path: Path
    process: subprocess.Popen | None = None
    credentials: tuple[str, str] | None = None  # (user, password) when authentication is on
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def get_json(self, path: str, timeout: float = 10.0) -> object:
        request = urllib.request.Request(self.url + path)
        if self.credentials:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read())

    def alive(self) -> bool:
        try:
            self.get_json("/system", timeout=2.0)
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self, timeout_s: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [ORTHANC_BIN, str(self.config_path)], cwd=self.workdir, stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "TCP_NODELAY": "1"})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            if self.alive():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer /system within {timeout_s} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def instances(self) -> list[str]:
        return list(self.get_json("/instances"))  # type: ignore[arg-type]


def orthanc_config(workdir: Path, http_port: int, dicom_port: int, aet: str,
                   modalities: dict[str, list] | None = None,
                   lua_scripts: list[str] | None = None, extra: dict | None = None) -> dict:
    config = {
        "Name": "lgenode-test-pacs",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        # Store/echo only from the declared modalities, at their host.
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowEcho": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": modalities if modalities is not None else {
            "lgenode": ["LGENODE", "127.0.0.1", 11112]},
        "Plugins": [dicomweb_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                     "WadoRoot": "/wado", "Host": "127.0.0.1", "Ssl": False},
        "LuaScripts": lua_scripts or [],
        "StableAge": 2,
        "ConcurrentJobs": 2,
        "HttpThreadsCount": 8,
    }
    if extra:
        config.update(extra)
    return config


def start_orthanc(workdir: Path, *, aet: str = "ORTHANC", modalities: dict[str, list] | None = None,
                  lua_scripts: list[str] | None = None, extra_config: dict | None = None) -> OrthancServer:
    if not orthanc_available():
        missing("orthanc", "Orthanc with the DICOMweb plugin is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    config = orthanc_config(workdir, http_port, dicom_port, aet, modalities, lua_scripts, extra_config)
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    users = config.get("RegisteredUsers") or {}
    creds = next(iter(users.items())) if config.get("AuthenticationEnabled") and users else None
    server = OrthancServer(workdir, http_port, dicom_port, aet, path, credentials=creds)
    server.start()
    return server


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[OrthancServer]:
    server = start_orthanc(tmp_path / "orthanc")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "orthanc" / "storage", ignore_errors=True)
