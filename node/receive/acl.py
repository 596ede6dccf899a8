"""Who may open an association: called AE must be ours; calling AE (and optionally source IP)
must be on the allow-list. Rejections carry the standard A-ASSOCIATE-RJ reasons."""

from __future__ import annotations

from dataclasses import dataclass

from node.config import DicomConfig

# (result, source, diagnostic) per PS3.8 9.3.4
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # rejected-permanent, service-user, calling AE title not recognised
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # rejected-permanent, service-user, called AE title not recognised


@dataclass(frozen=True)
class Decision:
    accept: bool
    reject: tuple[int, int, int] | None = None
    reason: str = ""


class PeerPolicy:
    def __init__(self, cfg: DicomConfig) -> None:
        self.our_ae = cfg.ae_title
        self.require_called = cfg.require_called_ae_title
        self.allow_any = cfg.allow_any_peer
        self.peers = [(p.ae_title, p.host) for p in cfg.allowed_peers]

    def decide(self, called_ae: str, calling_ae: str, address: str) -> Decision:
        called_ae, calling_ae = called_ae.strip(), calling_ae.strip()
        if self.require_called and called_ae != self.our_ae:
            return Decision(False, REJECT_CALLED_AE, f"called AE {called_ae!r} is not {self.our_ae!r}")
        if self.allow_any:
            return Decision(True)
        for ae, host in self.peers:
            if ae == calling_ae and (host is None or host == address):
                return Decision(True)
        known_ae = any(ae == calling_ae for ae, _ in self.peers)
        why = f"calling AE {calling_ae!r} not allowed from {address}" if known_ae else f"calling AE {calling_ae!r} not allowed"
        return Decision(False, REJECT_CALLING_AE, why)
