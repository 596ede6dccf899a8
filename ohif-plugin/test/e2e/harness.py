"""Processes the end-to-end test runs: a PACS (Orthanc), the real LGE node, the viewer.

- **PACS**: Orthanc with DICOMweb (``tests/support/orthanc.py``), with a Lua rule that routes
  every stable MR and SEG series to the node by C-STORE, as a site would auto-route. Orthanc
  1.10's Lua ``SendToModality`` fails on a series, so the rule uses the REST store route.
- **Node**: ``node.service.NodeService`` in this process (SCP, sweeps, workers, FastAPI API
  on loopback) with the PACS as its STOW-RS destination.
- **Viewer**: ``scripts/serve.mjs``: the prebuilt OHIF viewer, the plugin, and the PACS's
  DICOMweb and the node API reverse-proxied on one origin.

Everything listens on 127.0.0.1 with free ports. (Orthanc 1.10 cannot bind to loopback only:
its config accepts HTTP from loopback clients only and C-STORE only from the node's AE.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("e2e.harness")

# The routing script shipped in docker/ (image series to be segmented, SEG series = reviewed edits),
# so the e2e test exercises what a deployment runs. Our AI SEG comes back too: the node stores it
# and ignores it (AUTOMATIC), as in a real deployment.
ROUTE_LUA = (Path(__file__).resolve().parents[3] / "docker" / "route.lua").read_text()

NODE_AE = "LGENODE"
# The node API requires credentials: the harness's node accepts this key (roles read + review) under
# the name NODE_API_KEY_NAME, which the node records as the reviewer of every decision made with it.
# The viewer must send it (plugin config lgeReview.apiToken -> "Authorization: Bearer <key>").
NODE_API_KEY = "lgenode-e2e-key-2f6c1a9d4b7e"
NODE_API_KEY_NAME = "ohif-e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s ({last})")


def wait_for(fn: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``fn`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop one process we started (by its own pid; never by name)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def get_json(url: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
        return json.loads(r.read())


# ------------------------------------------------------------------ weights


def resolve_weights(explicit: str | None) -> tuple[Path | None, str]:
    """The weights folder the node should use: (folder or None, why / what is missing).

    Order: ``--weights``, env ``LGENODE_TEST_WEIGHTS`` (as the node's Orthanc e2e test), then
    the node's default (``LGENODE_WEIGHTS_DIR`` or the shipped ``models/weights``). A folder
    counts only if its ``model.json`` names a segmenter that exists as ONNX.
    """
    from models.segment import read_model_info, weights_dir_default

    candidates = [(explicit, "--weights"), (os.environ.get("LGENODE_TEST_WEIGHTS"), "LGENODE_TEST_WEIGHTS"),
                  (str(weights_dir_default()), "default weights")]
    tried = []
    for value, source in candidates:
        if not value:
            continue
        d = Path(value)
        try:
            info = read_model_info(d)
            if (d / info.segmenter).with_suffix(".onnx").is_file():
                return d, f"{source}: {d} ({info.name} {info.version})"
            tried.append(f"{d} ({source}): no {info.segmenter}.onnx")
        except Exception as exc:  # noqa: BLE001 - reported as "not usable"
            tried.append(f"{d} ({source}): {type(exc).__name__}")
        if explicit and source == "--weights":
            break
    return None, "no usable model weights (" + "; ".join(tried) + "); set LGENODE_TEST_WEIGHTS"


def weights_copy(weights: Path, dest: Path) -> Path:
    """A copy of the ONNX weights folder (members' subfolders included) whose ``model.json`` the
    test may change; the ``.keras`` files are left out (the node runs ONNX)."""
    shutil.copytree(weights, dest, ignore=shutil.ignore_patterns("*.keras"))
    return dest


def set_quality_threshold(weights: Path, threshold: float | None) -> None:
    """Set ``quality_threshold`` in ``weights/model.json`` (models.segment.Quality: the series is
    flagged "needs careful review" when its quality score is below it). 0.0 flags nothing, 1.0
    flags every series. The node picks the change up at its next job (its model cache is keyed
    on the folder's file times)."""
    path = weights / "model.json"
    info = json.loads(path.read_text())
    info["quality_threshold"] = threshold
    path.write_text(json.dumps(info, indent=1))
    now = time.time()
    os.utime(path, (now, now))


# ------------------------------------------------------------------ PACS


def start_pacs(workdir: Path, node_port: int):  # type: ignore[no-untyped-def]
    """Orthanc with DICOMweb, auto-routing MR and SEG series to the node at ``node_port``."""
    from tests.support.orthanc import start_orthanc

    lua = workdir / "route.lua"
    workdir.mkdir(parents=True, exist_ok=True)
    lua.write_text(ROUTE_LUA)
    return start_orthanc(
        workdir / "orthanc", modalities={"lgenode": [NODE_AE, "127.0.0.1", node_port]}, lua_scripts=[str(lua)],
        extra_config={
            "StableAge": 1,
            # Full metadata: OHIF reads the whole instance metadata at series level.
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                         "Host": "127.0.0.1", "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        })


# ------------------------------------------------------------------ node

_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _ExtraFormatter(logging.Formatter):
    """Text lines with the node's structured ``extra=`` fields appended (the node logs JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        line = super().format(record)
        return f"{line} {json.dumps(extra, default=str)}" if extra else line



@dataclass
class Node:
    """The real node service in this process (its API on ``api_url``)."""

    service: Any
    dicom_port: int
    api_port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def api(self, path: str) -> Any:
        return get_json(self.api_url + path, headers={"Authorization": f"Bearer {NODE_API_KEY}"})

    def stop(self) -> None:
        self.service.stop()


def start_node(workdir: Path, dicom_port: int, pacs: Any, weights: Path, log_file: Path,
               overrides: dict | None = None) -> Node:
    """NodeService with its SCP on ``dicom_port`` (accepting the PACS), the API on, results by
    STOW-RS to the PACS. Short idle/poll times keep the test quick. ``overrides``: top-level
    config sections merged into the test's configuration (e.g. ``{"selection": {...}}``)."""
    from node.config import NodeConfig
    from node.service import NodeService

    # The node's own log into a file kept as an artefact (not on the test's stderr).
    node_logger = logging.getLogger("node")
    handler = logging.FileHandler(log_file)
    handler.setFormatter(_ExtraFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    node_logger.addHandler(handler)
    node_logger.setLevel(logging.INFO)
    node_logger.propagate = False

    api_port = free_port()
    raw: dict[str, Any] = {
        "dicom": {"ae_title": NODE_AE, "port": dicom_port,
                  "allowed_peers": [{"ae_title": pacs.aet, "host": "127.0.0.1"}]},
        "storage": {"root": str(workdir / "store"), "min_free_mb": 1},
        "database": {"url": f"sqlite:///{workdir / 'node.db'}"},
        "series": {"idle_seconds": 1.0, "sweep_interval_seconds": 0.3},
        "jobs": {"poll_interval_seconds": 0.2, "retry_backoff_seconds": 1.0},
        "delivery": {"retry_backoff_seconds": 1.0, "max_backoff_seconds": 2.0, "sweep_interval_seconds": 0.5},
        "model": {"weights_dir": str(weights)},
        "api": {"enabled": True, "host": "127.0.0.1", "port": api_port,
                "auth": {"api_keys": [{"name": NODE_API_KEY_NAME, "roles": ["read", "review"],
                                       "key_sha256": hashlib.sha256(NODE_API_KEY.encode()).hexdigest()}]}},
        "audit": {"path": str(workdir / "audit.jsonl")},
        "destinations": [{"type": "stow", "name": "pacs", "url": pacs.dicomweb_url}],
    }
    for section, values in (overrides or {}).items():
        raw[section] = {**raw.get(section, {}), **values}
    cfg = NodeConfig.model_validate(raw)
    service = NodeService(cfg)
    service.start()
    node = Node(service, dicom_port, api_port)
    wait_http(node.api_url + "/health", timeout=20)
    log.info("node: DICOM %s:%d, API %s", NODE_AE, dicom_port, node.api_url)
    return node


# ------------------------------------------------------------------ viewer server


@dataclass
class ViewerServer:
    plugin_dir: Path
    dicomweb: str
    node: str
    workdir: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ViewerServer":
        self.port = self.port or free_port()
        logf = open(self.workdir / "serve.log", "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [shutil.which("node") or "node", "scripts/serve.mjs", "--port", str(self.port),
             "--dicomweb", self.dicomweb, "--node", self.node],
            cwd=self.plugin_dir, stdout=logf, stderr=subprocess.STDOUT,
            # LGE_NODE_API_TOKEN: serve.mjs (issue-12) writes it into app-config as lgeReview.apiToken.
            env={**os.environ, "LGE_SERVE_LOG": "1", "LGE_NODE_API_TOKEN": NODE_API_KEY})
        wait_http(f"{self.url}/app-config.js", timeout=20, proc=self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)
