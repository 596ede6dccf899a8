"""`lgenode config check`'s security part: errors for what cannot work (a certificate or key
that does not load, a missing CA file), warnings for what is unsafe and for an API key variable
that is not set in this environment (`serve` refuses to start without it)."""

from __future__ import annotations

import ssl

from node.config import ConfigError, NodeConfig
from node.security.startup import build_authenticator, security_warnings
from node.security.tls import client_context, server_context


def check_security(cfg: NodeConfig) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    if cfg.api.enabled:
        try:
            build_authenticator(cfg)
        except ConfigError as exc:
            # The service's environment (systemd, docker) is often not this shell's: a warning
            # here, while `serve` refuses to start without the key.
            warnings.append(f"{exc} here: `lgenode serve` will refuse to start without it")
    tls_checks = [("dicom.tls", lambda: server_context(cfg.dicom.tls, cfg.resolve), cfg.dicom.tls.enabled),
                  ("api.tls", lambda: server_context(cfg.api.tls, cfg.resolve), cfg.api.enabled and cfg.api.tls.enabled)]
    for d in cfg.destinations:
        tls = getattr(d, "tls", None)
        if tls is not None:
            tls_checks.append((f"destinations[{d.name}].tls", lambda t=tls: client_context(t, cfg.resolve), tls.enabled))
        ca = getattr(d, "ca_file", None)
        if ca is not None and not cfg.resolve(ca).is_file():
            errors.append(f"destinations[{d.name}].ca_file: {cfg.resolve(ca)} not found")
    for key, build, enabled in tls_checks:
        if not enabled:
            continue
        try:
            build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            errors.append(f"{key}: cannot load the certificate/key: {exc}")
    return errors, warnings + security_warnings(cfg)


__all__ = ["check_security"]
