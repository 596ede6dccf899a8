"""The security sections of ``node.yaml``: API authentication, TLS, the audit trail.

Kept apart from ``node/config.py`` (which embeds them) because they share one theme: no
credential is ever written in the file or printed (``SecretStr``; API keys come from the
environment or as their SHA-256), and the defaults are the safe ones (authentication
required, certificates verified).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# store: send instances to the node by STOW-RS (a PACS pushing images), nothing else.
# request: may queue inference requests (POST /api/inference-requests), e.g. a PACS or RIS key.
ROLES = ("read", "review", "store", "request", "admin")
Role = Literal["read", "review", "store", "request", "admin"]
_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ApiKeyConfig(_Strict):
    """A static key for a machine client; ``name`` is the identity recorded in audit and reviews."""

    name: str
    key_env: str | None = None  # environment variable that holds the key (never the key itself)
    key_sha256: str | None = None  # or the hex SHA-256 of the key
    roles: Annotated[list[Role], Field(min_length=1)]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _KEY_NAME_RE.match(v):
            raise ValueError("must be 1-64 characters: letters, digits, . _ @ -")
        return v

    @field_validator("key_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME_RE.match(v):
            raise ValueError("must be an environment variable name")
        return v

    @field_validator("key_sha256")
    @classmethod
    def _digest(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256_RE.match(v):
            raise ValueError("must be 64 hex digits (sha256sum of the key)")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_source(self) -> "ApiKeyConfig":
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError("set exactly one of key_env or key_sha256")
        return self


class OidcConfig(_Strict):
    """OAuth2/OIDC bearer JWTs, verified with the issuer's published keys (JWKS)."""

    issuer: str = Field(pattern=r"^https?://")
    audience: str = Field(min_length=1)
    jwks_url: str | None = Field(default=None, pattern=r"^https?://")  # None: from the discovery document
    roles_claim: str = "realm_access.roles"  # dotted path to a list (or space-separated string) of roles
    username_claim: str = "preferred_username"
    ca_file: Path | None = None  # CA bundle for the issuer's HTTPS (default: the system's)
    leeway_seconds: Annotated[float, Field(ge=0, le=300)] = 30.0  # clock skew allowed on exp/nbf/iat


class LockoutConfig(_Strict):
    """Throttle on invalid credentials per client address (node/api/lockout.py)."""

    # this many invalid credentials from one address within window_seconds lock it for
    # lockout_seconds (429 with Retry-After); 0 turns the throttle off
    max_failures: int = Field(default=10, ge=0)
    window_seconds: float = Field(default=60.0, gt=0)
    lockout_seconds: float = Field(default=300.0, gt=0)


class AuthConfig(_Strict):
    # required: every endpoint but /health and /ready needs credentials; open: none needed
    # (only on a loopback api.host; `lgenode config check` warns about it).
    mode: Literal["required", "open"] = "required"
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    oidc: OidcConfig | None = None
    public_metrics: bool = False  # /metrics without credentials
    public_docs: bool = False  # /docs, /redoc, /openapi.json without credentials
    lockout: LockoutConfig = Field(default_factory=LockoutConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> "AuthConfig":
        names = [k.name for k in self.api_keys]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"api_keys: duplicate name(s) {dup}")
        return self

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_keys) or self.oidc is not None


class TlsServerConfig(_Strict):
    """TLS for a listening socket (DICOM SCP or HTTPS API), BCP 195 profile."""

    enabled: bool = False
    cert_file: Path | None = None  # PEM certificate chain (ours first)
    key_file: Path | None = None  # PEM private key
    key_password: SecretStr | None = None  # use ${ENV_VAR}
    ca_file: Path | None = None  # CAs that sign acceptable client certificates
    require_client_cert: bool = False  # mutual TLS: refuse peers without a certificate from ca_file

    @model_validator(mode="after")
    def _files(self) -> "TlsServerConfig":
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("enabled: cert_file and key_file are required")
        if self.require_client_cert and self.ca_file is None:
            raise ValueError("require_client_cert: ca_file (the CAs of acceptable client certificates) is required")
        return self


class TlsClientConfig(_Strict):
    """TLS for an outgoing DICOM association (C-STORE SCU), BCP 195 profile."""

    enabled: bool = False
    ca_file: Path | None = None  # CAs that sign the peer's certificate (default: the system's)
    verify_hostname: bool = True  # the peer certificate must name the destination host
    cert_file: Path | None = None  # our client certificate, for peers that require one
    key_file: Path | None = None
    key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _pair(self) -> "TlsClientConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class AuditConfig(_Strict):
    enabled: bool = True
    # JSON-lines file; empty: audit.jsonl beside storage.root. Relative to the config file's folder.
    path: Path | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["ROLES", "Role", "ApiKeyConfig", "OidcConfig", "AuthConfig", "TlsServerConfig", "TlsClientConfig",
           "AuditConfig", "is_loopback"]
