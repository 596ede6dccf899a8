"""The node's configuration: a YAML file validated with pydantic.

Unknown keys are errors (a typo must not silently fall back to a default). String values may
reference environment variables as ``${NAME}`` or ``${NAME:-default}``; secrets (database
passwords, STOW-RS tokens) should come in that way rather than sit in the file. A few
environment variables override keys directly (see ``ENV_OVERRIDES``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from node.security.settings import AuditConfig, AuthConfig, TlsClientConfig, TlsServerConfig, is_loopback

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE VR: no backslash, no control chars
ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Environment variables that override a key (dotted path) after the file is read.
ENV_OVERRIDES: dict[str, str] = {
    "LGENODE_DATABASE_URL": "database.url",
    "LGENODE_STORAGE_ROOT": "storage.root",
    "LGENODE_PORT": "dicom.port",
    "LGENODE_AE_TITLE": "dicom.ae_title",
    "LGENODE_API_PORT": "api.port",
}


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_ae(value: str) -> str:
    value = value.strip()
    if not AE_TITLE_RE.match(value):
        raise ValueError("must be 1-16 printable ASCII characters without backslash")
    return value


def _check_ip(value: str, what: str) -> str:
    """An IP address literal (v4 or v6). Names are refused: a listen address must be one of
    this host's addresses, and a peer is matched on the address it connects from."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address ({what})") from None
    return value


class AllowedPeer(_Strict):
    ae_title: str = Field(description="Calling AE title the peer uses")
    host: str | None = Field(default=None, description="If set, the peer must also connect from this IP")

    _ae = field_validator("ae_title")(classmethod(lambda cls, v: _check_ae(v)))

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        # The peer's source IP is compared as text: a host name could never match.
        return None if v is None else _check_ip(v, "the peer's source address is compared with it; "
                                                   "a host name never matches")


class DicomConfig(_Strict):
    ae_title: str = "LGENODE"
    bind_address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 11112  # 0: any free port (tests)
    max_associations: Annotated[int, Field(ge=1, le=1000)] = 10
    max_pdu_size: Annotated[int, Field(ge=0)] = 262144
    require_called_ae_title: bool = True
    allow_any_peer: bool = False
    allowed_peers: list[AllowedPeer] = Field(default_factory=list)
    network_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    acse_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    dimse_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    tls: TlsServerConfig = Field(default_factory=TlsServerConfig)  # DICOM TLS on this port (BCP 195)

    _ae = field_validator("ae_title")(classmethod(lambda cls, v: _check_ae(v)))

    @field_validator("bind_address")
    @classmethod
    def _bind(cls, v: str) -> str:
        return _check_ip(v, "listen address: 127.0.0.1, an address of this host, or 0.0.0.0 for all")

    @field_validator("max_pdu_size")
    @classmethod
    def _pdu(cls, v: int) -> int:
        if v != 0 and v < 4096:
            raise ValueError("must be 0 (unlimited) or at least 4096 bytes")
        return v

    @model_validator(mode="after")
    def _peers(self) -> "DicomConfig":
        if not self.allow_any_peer and not self.allowed_peers:
            raise ValueError("allowed_peers is empty and allow_any_peer is false: no peer could send")
        return self


class StorageConfig(_Strict):
    root: Path = Path("var/store")
    min_free_mb: Annotated[int, Field(ge=0)] = 500
    fsync: bool = True
    retention_days: Annotated[int, Field(ge=0)] = 0


class DatabaseConfig(_Strict):
    url: str = "sqlite:///var/lgenode.db"
    echo: bool = False


class SelectionConfig(_Strict):
    modalities: list[str] = Field(default_factory=lambda: ["MR"])
    description_patterns: list[str] = Field(
        default_factory=lambda: [
            r"\bLGE\b", r"\bDE\b", r"\bPSIR\b", r"delayed", r"\bMDE\b", r"late[ _-]?gad", r"\bLE\b", r"viab", r"scar",
        ]
    )
    exclude_patterns: list[str] = Field(default_factory=lambda: [r"\bT1\s*map", r"\bcine\b", r"\bTI[ _-]?scout", r"\blocali[sz]er\b"])
    exclude_image_types: list[str] = Field(default_factory=lambda: ["LOCALIZER"])
    min_slices: Annotated[int, Field(ge=1)] = 3
    max_slices: Annotated[int, Field(ge=1)] = 60
    require_consistent_geometry: bool = True

    @model_validator(mode="after")
    def _slice_range(self) -> "SelectionConfig":
        if self.min_slices > self.max_slices:
            raise ValueError(f"min_slices ({self.min_slices}) is greater than max_slices ({self.max_slices}): "
                             "no series could be selected")
        return self

    @field_validator("description_patterns", "exclude_patterns")
    @classmethod
    def _regex(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {p!r}: {exc}") from None
        return v


class SeriesConfig(_Strict):
    idle_seconds: Annotated[float, Field(gt=0)] = 30.0
    sweep_interval_seconds: Annotated[float, Field(gt=0)] = 5.0
    late_instance_policy: Literal["reprocess", "store_only"] = "reprocess"


class JobsConfig(_Strict):
    workers: Annotated[int, Field(ge=0, le=16)] = 1
    max_attempts: Annotated[int, Field(ge=1)] = 3
    retry_backoff_seconds: Annotated[float, Field(ge=0)] = 30.0
    lease_seconds: Annotated[float, Field(gt=0)] = 120.0
    poll_interval_seconds: Annotated[float, Field(gt=0)] = 1.0


class CStoreDestinationConfig(_Strict):
    """A ``destinations:`` entry for C-STORE; the outbox turns it into a `node.deliver.CStoreDestination`."""

    type: Literal["cstore"]
    name: str = Field(min_length=1, max_length=64)
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    ae_title: str
    calling_ae_title: str | None = None  # default: dicom.ae_title
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    tls: TlsClientConfig = Field(default_factory=TlsClientConfig)

    _ae = field_validator("ae_title")(classmethod(lambda cls, v: _check_ae(v)))


class StowDestinationConfig(_Strict):
    """A ``destinations:`` entry for STOW-RS; the outbox turns it into a `node.deliver.StowDestination`."""

    type: Literal["stow"]
    name: str = Field(min_length=1, max_length=64)
    url: str = Field(pattern=r"^https?://")
    # Sent as the Authorization header, e.g. "Bearer ${PACS_TOKEN}" (use an env reference).
    auth_header: SecretStr | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    verify_tls: bool = True  # check the https:// server's certificate
    ca_file: Path | None = None  # CA bundle for that check (default: the system's)


DestinationConfig = Annotated[CStoreDestinationConfig | StowDestinationConfig, Field(discriminator="type")]


class DicomwebSourceConfig(_Strict):
    """A ``sources:`` entry: a DICOMweb service the node retrieves studies from (QIDO-RS + WADO-RS)
    for inference requests (node/retrieve/dicomweb.py). Same connection settings as a STOW destination."""

    type: Literal["dicomweb"]
    name: str = Field(min_length=1, max_length=64)
    url: str = Field(pattern=r"^https?://")  # service root, e.g. http://pacs:8042/dicom-web
    # Sent as the Authorization header, e.g. "Bearer ${PACS_TOKEN}" (use an env reference).
    auth_header: SecretStr | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    verify_tls: bool = True  # check the https:// server's certificate
    ca_file: Path | None = None  # CA bundle for that check (default: the system's)
    # A source that cannot be reached (connection refused, timeout, HTTP 5xx) is tried this many
    # times in all, the delay doubling from retry_backoff_seconds up to max_backoff_seconds;
    # then the request fails with the last error as its reason.
    max_attempts: Annotated[int, Field(ge=1)] = 5
    retry_backoff_seconds: Annotated[float, Field(ge=0)] = 10.0
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 300.0


class DimseSourceConfig(_Strict):
    """A ``sources:`` entry: a PACS without DICOMweb, queried by C-FIND and retrieved by C-GET on
    one association that also carries the C-STORE sub-operations (node/retrieve/dimse.py). The
    PACS must know the node's calling AE title (e.g. Orthanc's ``DicomModalities``)."""

    type: Literal["dimse"]
    name: str = Field(min_length=1, max_length=64)
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    ae_title: str  # the PACS's (called) AE title
    calling_ae_title: str | None = None  # default: dicom.ae_title
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0  # network / DIMSE timeout
    tls: TlsClientConfig = Field(default_factory=TlsClientConfig)  # DICOM TLS, as for a C-STORE destination
    # Retried as a DICOMweb source: connection refused, association rejected/aborted, timeout.
    max_attempts: Annotated[int, Field(ge=1)] = 5
    retry_backoff_seconds: Annotated[float, Field(ge=0)] = 10.0
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 300.0

    _ae = field_validator("ae_title", "calling_ae_title")(
        classmethod(lambda cls, v: v if v is None else _check_ae(v)))


SourceConfig = Annotated[DicomwebSourceConfig | DimseSourceConfig, Field(discriminator="type")]


class RetrieveConfig(_Strict):
    # How often queued inference requests are looked at (retrieval, then progress of their jobs).
    sweep_interval_seconds: Annotated[float, Field(gt=0)] = 2.0


class DeliveryConfig(_Strict):
    max_attempts: Annotated[int, Field(ge=1)] = 20
    retry_backoff_seconds: Annotated[float, Field(ge=0)] = 10.0
    max_backoff_seconds: Annotated[float, Field(gt=0)] = 1800.0
    sweep_interval_seconds: Annotated[float, Field(gt=0)] = 5.0


class ModelConfig(_Strict):
    # Folder with model.json + the segmenter/localiser (ONNX and/or .keras). Empty: the weights
    # shipped in the package (models/weights), or env LGENODE_WEIGHTS_DIR.
    weights_dir: Path | None = None
    runtime: Literal["onnx", "onnx-int8", "keras"] = "onnx"
    # Also write the readable Encapsulated PDF report (about a second per job).
    write_report: bool = True


class StowReceiveConfig(_Strict):
    """STOW-RS in (``POST /dicom-web/studies``, node/receive/stow.py); callers need the ``store`` role."""

    enabled: bool = True
    # Largest request body accepted (413 beyond). Instances are stored as their parts arrive, so
    # this bounds abuse and one instance's memory, not the memory of a whole study.
    max_body_mb: Annotated[int, Field(ge=1)] = 1024


class ApiConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TlsServerConfig = Field(default_factory=TlsServerConfig)  # HTTPS
    stow: StowReceiveConfig = Field(default_factory=StowReceiveConfig)

    @model_validator(mode="after")
    def _no_open_api_on_network(self) -> "ApiConfig":
        # An unauthenticated API reachable from the network lets anyone read every job and forge
        # reviews: refused outright rather than warned about.
        if self.enabled and self.auth.mode == "open" and not is_loopback(self.host):
            raise ValueError(f"auth.mode is open on host {self.host}: an API without authentication may only "
                             "listen on a loopback address (configure api_keys or oidc instead)")
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _check_ip(v, "listen address: 127.0.0.1, an address of this host, or 0.0.0.0 for all")


class ClusterConfig(_Strict):
    """Several nodes on one PostgreSQL database, each with its OWN storage.root (no shared disk).

    Every instance and result file is recorded with the name of the node that holds it; a worker
    that lacks a file fetches it from that node's WADO-RS endpoint (node/cluster/fetch.py), and
    each node's outbox sends only the results it wrote. Nodes announce ``node_name -> url`` in the
    database (table ``nodes``). Leave ``enabled`` false for a single node or for nodes that share
    storage.root (e.g. one NFS export): then every node reads every file directly.
    """

    enabled: bool = False
    # This node's name in the database (unique in the cluster); default: the host name.
    node_name: str = Field(default="", max_length=64)

    @field_validator("node_name", mode="before")
    @classmethod
    def _name(cls, v: str | None) -> str:
        return (v or "").strip() or socket.gethostname()[:64]
    # The DICOMweb base URL peers use to reach THIS node's API, e.g. https://node-a.example:8080/dicom-web
    url: str | None = Field(default=None, pattern=r"^https?://")
    # Sent as the Authorization header to peers, e.g. "Bearer ${LGENODE_PEER_TOKEN}" (an API key
    # with the read role on every node; use an env reference, never the secret itself).
    auth_header: SecretStr | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    verify_tls: bool = True  # check the peers' https:// certificates
    ca_file: Path | None = None  # CA bundle for that check (default: the system's)
    # How often this node refreshes its entry in the nodes table (its heartbeat).
    heartbeat_seconds: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _url(self) -> "ClusterConfig":
        if self.enabled and not self.url:
            raise ValueError("cluster.enabled needs cluster.url: the DICOMweb base URL peers use to fetch "
                             "this node's files (e.g. http://node-a:8080/dicom-web)")
        return self


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class NodeConfig(_Strict):
    # No default here: a file without a dicom: section gets DicomConfig's own defaults
    # (allow_any_peer false), see _dicom_section; only load_config(None) accepts any peer.
    dicom: DicomConfig
    storage: StorageConfig = Field(default_factory=StorageConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    series: SeriesConfig = Field(default_factory=SeriesConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    destinations: list[DestinationConfig] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    retrieve: RetrieveConfig = Field(default_factory=RetrieveConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    # Directory that relative paths in this file are resolved against (set by the loader).
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _dicom_section(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dicom" not in data:
            data = {**data, "dicom": {}}
        return data

    @model_validator(mode="after")
    def _ports(self) -> "NodeConfig":
        if self.api.enabled and self.dicom.port != 0 and self.api.port == self.dicom.port:
            raise ValueError(f"api.port equals dicom.port ({self.dicom.port}): the two listeners need their own ports")
        return self

    @model_validator(mode="after")
    def _unique_destinations(self) -> "NodeConfig":
        names = [d.name for d in self.destinations]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"destinations: duplicate name(s) {sorted(dup)}")
        return self

    @model_validator(mode="after")
    def _unique_sources(self) -> "NodeConfig":
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"sources: duplicate name(s) {sorted(dup)}")
        return self

    @model_validator(mode="after")
    def _cluster(self) -> "NodeConfig":
        if not self.cluster.enabled:
            return self
        if self.database.url.startswith("sqlite"):
            # SQLite is one file on one host: there is no second node to share it with.
            raise ValueError("cluster.enabled needs a shared PostgreSQL database (database.url "
                             "postgresql+psycopg://...); SQLite cannot be shared between nodes")
        if not self.api.enabled:
            raise ValueError("cluster.enabled needs api.enabled: peers fetch this node's files by WADO-RS from its API")
        return self

    @property
    def node_name(self) -> str | None:
        """The name recorded with the files this node writes; None without a cluster."""
        return self.cluster.node_name if self.cluster.enabled else None

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def storage_root(self) -> Path:
        return self.resolve(self.storage.root)

    @property
    def audit_path(self) -> Path:
        """The audit trail file: audit.path, or audit.jsonl beside the storage root."""
        return self.resolve(self.audit.path) if self.audit.path else self.storage_root.parent / "audit.jsonl"

    @property
    def database_url(self) -> str:
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(Path(url[len(prefix):])))
        return url


def _expand_env(obj: Any, env: Any, path: str = "") -> Any:
    if isinstance(obj, dict):
        return {k: _expand_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return str(env[name])
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return ENV_REF_RE.sub(sub, obj)
    return obj


def _set_dotted(data: dict[str, Any], dotted: str, value: str) -> None:
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[:-1])}: expected a mapping")
    node[parts[-1]] = value


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see config/README.md)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: Path | str | None = None, *, environ: dict[str, str] | None = None) -> NodeConfig:
    """Read, expand and validate a config file; ``None`` gives the embedded defaults.

    Raises ConfigError with a message that names each bad key.
    """
    env = os.environ if environ is None else environ
    # The one rule for allow_any_peer: without a file (the embedded defaults, also when
    # environment variables override some keys) any calling AE is accepted, for trying the node
    # on a laptop; in a file it is false unless the file says true, so a deployed node only
    # accepts the peers its file lists.
    data: dict[str, Any] = {"dicom": {"allow_any_peer": True}}
    source = "embedded defaults"
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {p}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        data = _expand_env(loaded, env)
        base_dir = p.resolve().parent  # relative paths in a file are relative to that file
    for var, dotted in ENV_OVERRIDES.items():
        if var in env:
            _set_dotted(data, dotted, env[var])
    try:
        cfg = NodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    cfg.base_dir = base_dir
    return cfg
