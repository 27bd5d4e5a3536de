from hybridai.orchestrator import Breaker, BreakerState


def test_closed_until_threshold_consecutive_failures():
    b = Breaker(threshold=3, cooldown_s=5)
    assert b.state(0) is BreakerState.CLOSED and b.allows(0)
    b = b.on_failure(0).on_failure(1)
    assert b.state(1) is BreakerState.CLOSED and b.allows(1)
    b = b.on_success().on_failure(2).on_failure(3)  # a success resets the count
    assert b.state(3) is BreakerState.CLOSED


def test_opens_at_threshold_and_refuses_for_the_cooldown():
    b = Breaker(threshold=2, cooldown_s=5).on_failure(0).on_failure(1)
    assert b.state(1) is BreakerState.OPEN
    assert not b.allows(1) and not b.allows(5.99) and b.state(3) is BreakerState.OPEN


def test_half_open_after_cooldown_allows_one_trial():
    b = Breaker(threshold=1, cooldown_s=5).on_failure(0)
    assert b.state(5) is BreakerState.HALF_OPEN and b.allows(5)
    b = b.on_attempt(5)
    assert not b.allows(5.1), "a second call waits for the trial's outcome"
    assert b.allows(10), "a trial that never reports stops blocking after another cooldown"


def test_half_open_trial_success_closes():
    b = Breaker(threshold=1, cooldown_s=5).on_failure(0).on_attempt(6).on_success()
    assert b.state(6) is BreakerState.CLOSED and b.allows(6) and b.failures == 0


def test_half_open_trial_failure_reopens_for_a_full_cooldown():
    b = Breaker(threshold=3, cooldown_s=5)
    for t in range(3):
        b = b.on_failure(t)
    b = b.on_attempt(8).on_failure(8)
    assert b.state(8) is BreakerState.OPEN and not b.allows(12.9)
    assert b.state(13) is BreakerState.HALF_OPEN and b.allows(13)


def test_on_attempt_is_a_no_op_when_closed():
    b = Breaker()
    assert b.on_attempt(1) == b
