"""Fetching the one row a route is about, or answering 404 with what was not found."""

from __future__ import annotations

from typing import TypeVar

from fastapi import HTTPException
from sqlalchemy.orm import Session

T = TypeVar("T")


def get_or_404(session: Session, model: type[T], key: int, what: str) -> T:
    """The row of ``model`` with primary key ``key``; HTTP 404 "no <what> <key>" when there is none."""
    row = session.get(model, key)
    if row is None:
        raise HTTPException(404, f"no {what} {key}")
    return row
