"""Recovery policy: restart after consecutive failures, wait out a grace period, stop after the budget.

Driven by a fake clock, so grace and window are exact and the tests never sleep.
"""

from healthcheck.recovery import RecoveryPolicy, Restarter


class CountingRestarter(Restarter):
    def __init__(self):
        self.calls = 0

    def restart(self, reason: str) -> str:
        self.calls += 1
        return "restarted"


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_restarts_then_gives_up_instead_of_looping():
    r = CountingRestarter()
    clock = FakeClock()
    p = RecoveryPolicy(r, failures_before_restart=2, max_restarts=3, window=600, grace=0.05, clock=clock)
    reasons = {"server.liveness": "server is not listening"}
    actions = []
    restarted_at = []
    for _ in range(40):
        p.observe("server.liveness", failed=True)
        action = p.decide(reasons)
        if action:
            actions.append(action)
            if action.startswith("restart"):
                restarted_at.append(clock.now)
        clock.advance(0.01)
    assert r.calls == 3, actions
    assert actions[-1].startswith("gave up: server restarted 3 times in 10 min and still fails (server is not listening)")
    assert p.gave_up_reason and "contact the vendor" in p.gave_up_reason
    assert sum(a.startswith("gave up") for a in actions) == 1
    assert all(b - a >= 0.05 for a, b in zip(restarted_at, restarted_at[1:])), restarted_at


def test_one_failure_does_not_restart_and_success_resets_the_count():
    r = CountingRestarter()
    p = RecoveryPolicy(r, failures_before_restart=2, max_restarts=3, window=600, grace=0, clock=FakeClock())
    for failed in (True, False, True, False, True):
        p.observe("server.liveness", failed)
        assert p.decide({}) is None
    assert r.calls == 0
