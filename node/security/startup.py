"""What `lgenode serve` and `lgenode config check` do with the security settings: build the
authenticator (API keys from the environment), list what is insecure, and audit the load."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.config import ConfigError, NodeConfig
from node.security import audit as A
from node.security.settings import is_loopback
from node.security.tls import server_context


def build_authenticator(cfg: NodeConfig, environ: Any = None) -> Any:
    from node.api.auth import Authenticator

    try:
        return Authenticator(cfg.api.auth, environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def security_warnings(cfg: NodeConfig) -> list[str]:
    """Settings that work but are unsafe; `config check` prints them, `serve` logs them."""
    out: list[str] = []
    api = cfg.api
    if api.enabled:
        if api.auth.mode == "open":
            out.append("api.auth.mode is open: anyone who reaches the API reads every job and series and records "
                       "reviews (as 'anonymous'); configure api.auth.api_keys or api.auth.oidc")
        elif not api.auth.has_credentials:
            out.append("api.auth has no api_keys and no oidc: every API request except /health and /ready is "
                       "refused (401)")
        if not is_loopback(api.host) and not api.tls.enabled:
            out.append(f"api.host {api.host} without api.tls: credentials and results cross the network in clear "
                       "text (enable api.tls or put a TLS proxy in front)")
        if api.auth.public_metrics and not is_loopback(api.host):
            out.append(f"api.auth.public_metrics on host {api.host}: /metrics is readable by anyone on the network")
        if api.auth.public_docs and not is_loopback(api.host):
            out.append(f"api.auth.public_docs on host {api.host}: /docs is readable by anyone on the network")
    if not is_loopback(cfg.dicom.bind_address) and not cfg.dicom.tls.enabled:
        out.append(f"dicom.bind_address {cfg.dicom.bind_address} without dicom.tls: images arrive unencrypted "
                   "(acceptable on a trusted imaging network only)")
    for d in cfg.destinations:
        if getattr(d, "type", None) == "stow" and not d.verify_tls:
            out.append(f"destinations[{d.name}]: verify_tls is false: the server's certificate is not checked")
        if getattr(d, "type", None) == "stow" and d.auth_header is not None and d.url.startswith("http://"):
            out.append(f"destinations[{d.name}]: auth_header sent over plain http")
    c = cfg.cluster
    if c.enabled:
        from urllib.parse import urlsplit

        host = urlsplit(c.url or "").hostname or ""
        if (c.url or "").startswith("http://") and not is_loopback(host):
            out.append(f"cluster.url {c.url} is plain http: other nodes fetch images (and send their key) in clear text")
        if not c.verify_tls:
            out.append("cluster.verify_tls is false: the other nodes' certificates are not checked")
        if c.auth_header is None:
            out.append("cluster.auth_header is empty: the other nodes' APIs will refuse this node's fetches (401) "
                       "unless their auth.mode is open")
    if not cfg.audit.enabled:
        out.append("audit.enabled is false: no audit trail is written")
    return out


def api_ssl_factory(cfg: NodeConfig) -> Callable[[Any, Any], ssl.SSLContext]:
    """A uvicorn ``ssl_context_factory`` returning our context, built now so that a bad
    certificate or key stops `serve` with its reason."""
    ctx = server_context(cfg.api.tls, cfg.resolve)
    return lambda _config, _default: ctx


def record_config_load(log: A.AuditLog, cfg: NodeConfig, path: Path | None) -> None:
    digest = None
    if path is not None:
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            pass
    log.record(A.SECURITY_ALERT, action="E", types=[A.SOFTWARE_CONFIGURATION],
               participants=[A.participant(cfg.dicom.ae_title, requestor=False, role=A.ROLE_APPLICATION)],
               description="configuration loaded",
               config={"path": str(path) if path else "embedded defaults", "sha256": digest,
                       "api_auth": cfg.api.auth.mode, "api_keys": [k.name for k in cfg.api.auth.api_keys],
                       "oidc_issuer": cfg.api.auth.oidc.issuer if cfg.api.auth.oidc else None,
                       "api_tls": cfg.api.tls.enabled, "dicom_tls": cfg.dicom.tls.enabled,
                       "destinations": [d.name for d in cfg.destinations],
                       "warnings": security_warnings(cfg)})


__all__ = ["build_authenticator", "security_warnings", "api_ssl_factory", "record_config_load"]
