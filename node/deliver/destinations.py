"""Where results go: one dataclass per transport (no pydantic: the config layer converts)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

__all__ = ["CStoreDestination", "StowDestination", "DeliveryResult"]


@dataclass(frozen=True)
class CStoreDestination:
    """A DICOM AE that accepts C-STORE (typically the PACS)."""

    host: str
    port: int
    ae_title: str  # called AE title
    calling_ae_title: str = "LGENODE"
    name: str = ""  # label for logs and the database
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    network_timeout_s: float = 60.0
    max_pdu: int = 0  # 0: unlimited
    # DICOM TLS (node/security/tls.py client_context); None: plain TCP.
    tls_context: ssl.SSLContext | None = None

    @property
    def label(self) -> str:
        return self.name or f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class StowDestination:
    """A DICOMweb service root that accepts STOW-RS (e.g. http://pacs/dicom-web)."""

    url: str
    # Full value of the Authorization header (e.g. "Bearer <token>"); comes from the
    # environment through the config, never from a file in the repository.
    auth_header: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    timeout_s: float = 60.0
    verify_tls: bool = True
    ca_file: str | None = None  # CA bundle for https:// (None: the system's)

    @property
    def label(self) -> str:
        return self.name or self.url

    def __repr__(self) -> str:  # never print the token
        auth = "<set>" if self.auth_header else None
        return f"StowDestination(url={self.url!r}, auth_header={auth}, name={self.name!r})"


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of sending one object to one destination."""

    sop_instance_uid: str
    sop_class_uid: str
    ok: bool
    status: int | None  # DIMSE status (C-STORE) or HTTP status (STOW-RS); None: not sent
    detail: str = ""
    warning: bool = False  # stored, but with a warning status (e.g. coercion)
