from __future__ import annotations

import pytest

from node.store.uids import is_valid_uid


@pytest.mark.parametrize("uid", ["1.2.3", "0.0", "1.2.840.10008.5.1.4.1.1.4", "1." + "2" * 62])
def test_valid(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize("uid", ["", "1", "1.2.3\n", "\n1.2.3", "1.2.3 ", "1.02.3", "1..2", "1.2.", ".1.2", "1.a.2",
                                 "1." + "2" * 63, "../1.2", "1.2/3", "１.２", None, 1.2])
def test_invalid(uid: object) -> None:
    assert not is_valid_uid(uid)
