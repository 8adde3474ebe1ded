"""Failed attempts lock a client or an account out for the rest of the window, and success clears them."""

from __future__ import annotations

from appliance.auth.attempts import AttemptLimiter


def test_lockout_and_release():
    now = [0.0]
    limiter = AttemptLimiter(3, 900, clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("client:1", "account:admin")
    assert limiter.retry_after("client:1", "account:admin") is None
    limiter.failed("client:1", "account:admin")
    assert limiter.retry_after("client:2", "account:admin") == 901  # the account is locked from any client
    assert limiter.retry_after("client:1", "account:bob") == 901  # and the client for any account
    now[0] = 600
    assert limiter.retry_after("account:admin") == 301
    now[0] = 900
    assert limiter.retry_after("account:admin") is None  # the window has passed
    limiter.failed("client:3")
    limiter.succeeded("client:3")
    assert limiter.retry_after("client:3") is None
