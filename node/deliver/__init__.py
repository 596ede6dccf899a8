"""Transports for result objects (no database here): C-STORE SCU and STOW-RS.

`deliver(objects, destination)` dispatches on the destination type; the job layer records the
per-object `DeliveryResult`s and decides about retries (re-sending the same stored objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from node.deliver.destinations import CStoreDestination, DeliveryResult, StowDestination

__all__ = ["CStoreDestination", "StowDestination", "DeliveryResult", "Destination", "deliver"]

Destination = CStoreDestination | StowDestination


def deliver(objects: Sequence[Dataset | str | Path], destination: Destination) -> list[DeliveryResult]:
    if isinstance(destination, CStoreDestination):
        from node.deliver.cstore import send_cstore

        return send_cstore(objects, destination)
    if isinstance(destination, StowDestination):
        from node.deliver.stow import send_stow

        return send_stow(objects, destination)
    raise TypeError(f"unknown destination type {type(destination).__name__}")
