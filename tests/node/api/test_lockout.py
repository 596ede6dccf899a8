"""Failed-authentication throttle (node/api/lockout.py): an address guessing credentials is
refused with 429 for a while, whatever it presents then; requests without credentials and valid
ones do not count; other addresses are not affected."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from node.api.app import create_app
from node.api.auth import Authenticator, sha256_hex
from node.api.lockout import FailureLimiter
from node.security.audit import AuditLog
from node.security.settings import AuthConfig, LockoutConfig

KEY = "reader-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_limiter_locks_after_max_failures_in_window_and_unlocks_later() -> None:
    clock = Clock()
    lim = FailureLimiter(LockoutConfig(max_failures=3, window_seconds=60, lockout_seconds=300), clock)
    assert not lim.failure("10.0.0.1") and not lim.failure("10.0.0.1")
    clock.t += 61  # the first two fell out of the window
    assert not lim.failure("10.0.0.1") and not lim.failure("10.0.0.1")
    assert lim.locked("10.0.0.1") == 0
    assert lim.failure("10.0.0.1")  # third within 60 s
    assert lim.locked("10.0.0.1") == 300 and lim.locked("10.0.0.2") == 0
    clock.t += 299
    assert 0 < lim.locked("10.0.0.1") <= 1
    clock.t += 2
    assert lim.locked("10.0.0.1") == 0


def test_success_clears_the_count_and_zero_disables() -> None:
    lim = FailureLimiter(LockoutConfig(max_failures=2), Clock())
    lim.failure("a")
    lim.success("a")
    assert not lim.failure("a")  # counting starts again
    off = FailureLimiter(LockoutConfig(max_failures=0), Clock())
    assert not any(off.failure("a") for _ in range(100)) and off.locked("a") == 0


def test_api_answers_429_after_repeated_bad_keys_even_to_a_good_key(core, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    audit = tmp_path / "audit.jsonl"
    cfg = AuthConfig.model_validate({"api_keys": [{"name": "r", "key_sha256": sha256_hex(KEY), "roles": ["read"]}],
                                     "lockout": {"max_failures": 3, "window_seconds": 60, "lockout_seconds": 120}})
    client = TestClient(create_app(core.sessions, core.files.root, lambda: True, auth=Authenticator(cfg, {}),
                                   audit=AuditLog(audit)))
    for _ in range(5):  # no credentials at all (a viewer before login): never counted
        assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers={"X-API-Key": KEY}).status_code == 200
    for _ in range(3):
        assert client.get("/api/jobs", headers={"X-API-Key": "guess-0123456789abcdef"}).status_code == 401
    r = client.get("/api/jobs", headers={"X-API-Key": KEY})  # the right key no longer helps
    assert r.status_code == 429 and 100 < int(r.headers["retry-after"]) <= 121
    assert r.json()["retry_after_seconds"] == int(r.headers["retry-after"])
    assert client.get("/health").status_code == 200  # public routes stay open
    alerts = [json.loads(line) for line in audit.read_text().splitlines()]
    locked = [a for a in alerts if a.get("Detail", {}).get("http_status") == 429]
    assert len(locked) == 1 and "locked out" in json.dumps(locked[0])
    metrics = client.get("/metrics", headers={"X-API-Key": KEY})  # locked: metrics too
    assert metrics.status_code == 429


def test_default_config_has_the_throttle_on() -> None:
    assert AuthConfig().lockout.max_failures == 10
