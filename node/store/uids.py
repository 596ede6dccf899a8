"""UID validation: a UID becomes a path component, so anything that is not a valid UID is refused."""

from __future__ import annotations

import re

# PS3.5 §9.1: components of digits separated by '.', no leading zero in a multi-digit
# component, at most 64 characters. fullmatch: `$` would also accept a trailing newline.
_UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and _UID_RE.fullmatch(value) is not None


class InvalidUID(ValueError):
    def __init__(self, name: str, value: object) -> None:
        shown = repr(value)[:80]
        super().__init__(f"{name} is not a valid DICOM UID: {shown}")
        self.name = name
