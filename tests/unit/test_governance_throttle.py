"""Login throttling: growing lockouts per user and per address; success clears the user."""

from __future__ import annotations

from hybridai.governance.throttle import LoginThrottle

KEYS = ["user:alice", "addr:10.0.0.9"]


def test_free_failures_then_growing_lockout() -> None:
    throttle = LoginThrottle(free_failures=3, base_s=1.0, max_s=8.0)
    now = 1000.0
    for _ in range(2):
        assert throttle.failure(KEYS, now) == 0.0
    locks = [throttle.failure(KEYS, now + i * 100) for i in range(6)]
    assert locks == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    assert throttle.retry_after(KEYS, now + 500) == 8.0
    assert throttle.retry_after(KEYS, now + 508) == 0.0


def test_success_clears_the_user_but_not_the_address() -> None:
    throttle = LoginThrottle(free_failures=1, base_s=10.0)
    throttle.failure(KEYS, 0.0)
    throttle.success("user:alice")
    assert throttle.retry_after(["user:alice"], 1.0) == 0.0
    assert throttle.retry_after(["addr:10.0.0.9"], 1.0) == 9.0


def test_spraying_many_users_from_one_address_is_throttled() -> None:
    throttle = LoginThrottle(free_failures=3, base_s=5.0)
    for i in range(3):
        throttle.failure([f"user:u{i}", "addr:evil"], 0.0)
    assert throttle.retry_after(["user:someone-new", "addr:evil"], 1.0) == 4.0
    assert throttle.retry_after(["user:someone-new", "addr:elsewhere"], 1.0) == 0.0


def test_old_failures_are_forgotten() -> None:
    throttle = LoginThrottle(free_failures=2, base_s=1.0, forget_after_s=60.0)
    throttle.failure(KEYS, 0.0)
    assert throttle.failure(KEYS, 100.0) == 0.0  # the first miss was long ago


def test_memory_stays_bounded() -> None:
    throttle = LoginThrottle(free_failures=10, max_keys=100, forget_after_s=1.0)
    for i in range(1000):
        throttle.failure([f"user:{i}"], float(i))
    assert len(throttle._states) <= 100
