"""TLS contexts for the DICOM SCP, the C-STORE SCU and the HTTPS API (BCP 195 profile).

DICOM PS3.15 Annex B.9-B.11 (the BCP 195 Secure Transport Connection Profiles) follow
RFC 7525 (BCP 195): TLS 1.2 or later, no compression, no renegotiation, and for TLS 1.2 only
AEAD cipher suites with forward secrecy (ECDHE/DHE with AES-GCM or ChaCha20-Poly1305). That is
also what the "non-downgrading" profile (DCMTK's default for ``+tls``) negotiates, so DCMTK
peers interoperate. TLS 1.3 suites are all AEAD and left at OpenSSL's choice.

The SCP's TLS handshake runs in the association's own thread (``DeferredHandshakeServer``):
pynetdicom's stock server does it inside the accept loop, where one peer that connects and
sends nothing would stop every other peer from connecting.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from node.security.settings import TlsClientConfig, TlsServerConfig

log = logging.getLogger(__name__)

# RFC 7525 section 4.2 recommended suites (and their ChaCha20 siblings), TLS 1.2 only.
BCP195_TLS12_CIPHERS = "ECDHE+AESGCM:DHE+AESGCM:ECDHE+CHACHA20:DHE+CHACHA20:!aNULL:!eNULL:!SHA1"


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(BCP195_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def server_context(cfg: TlsServerConfig, resolve: Callable[[Path], Path] = lambda p: p) -> ssl.SSLContext:
    """Context for a listening socket: our certificate, and client certificates checked against
    ``ca_file`` (required when ``require_client_cert``, else not asked for)."""
    if cfg.cert_file is None or cfg.key_file is None:
        raise ValueError("TLS needs cert_file and key_file")
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(resolve(cfg.cert_file), resolve(cfg.key_file), password=_secret(cfg.key_password))
    if cfg.ca_file is not None:
        ctx.load_verify_locations(cafile=resolve(cfg.ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED if cfg.require_client_cert else ssl.CERT_NONE
    return ctx


def client_context(cfg: TlsClientConfig, resolve: Callable[[Path], Path] = lambda p: p) -> ssl.SSLContext:
    """Context for an outgoing association: the peer's certificate is always verified."""
    ctx = _harden(ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=resolve(cfg.ca_file) if cfg.ca_file else None))
    ctx.check_hostname = cfg.verify_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cfg.cert_file is not None and cfg.key_file is not None:
        ctx.load_cert_chain(resolve(cfg.cert_file), resolve(cfg.key_file), password=_secret(cfg.key_password))
    return ctx


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
          "localityName": "L", "stateOrProvinceName": "ST"}


def peer_subject(sock: Any) -> str | None:
    """The verified peer certificate's subject (``CN=...,O=...``), or None without one."""
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        cert = getpeercert()
    except (ValueError, OSError):
        return None
    if not cert:
        return None
    parts = [f"{_SHORT.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    return ",".join(parts) or None


HandshakeFailure = Callable[[tuple[str, int], str], None]


class DeferredHandshakeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the TLS handshake moved out of the accept loop: the
    socket is wrapped without handshaking, and ``handshake`` (called by the request handler in
    the connection's own thread) completes it within ``handshake_timeout`` seconds."""

    handshake_timeout: float = 30.0
    on_handshake_failure: HandshakeFailure | None = None

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client_socket, address = self.socket.accept()
        if self.ssl_context:
            client_socket = self.ssl_context.wrap_socket(client_socket, server_side=True,
                                                         do_handshake_on_connect=False)
        return client_socket, address

    def handshake(self, sock: socket.socket, address: tuple[str, int]) -> bool:
        if not isinstance(sock, ssl.SSLSocket):
            return True
        timeout = sock.gettimeout()
        try:
            sock.settimeout(self.handshake_timeout)
            sock.do_handshake()
            sock.settimeout(timeout)
            return True
        except (OSError, ValueError) as exc:  # ssl.SSLError, timeout, reset
            reason = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
            log.warning("TLS handshake failed", extra={"peer": address[0], "reason": reason})
            if self.on_handshake_failure is not None:
                self.on_handshake_failure(address, reason)
            try:
                sock.close()
            except OSError:
                pass
            return False


__all__ = ["BCP195_TLS12_CIPHERS", "server_context", "client_context", "peer_subject", "DeferredHandshakeServer"]
