"""A shed request's wait: `Retry-After: 1` for every client, and `retry-after-ms` spread
evenly around it so that clients refused together come back apart."""

from __future__ import annotations

import random

import pytest

from mpfn.functions.router.retryafter import RETRY_AFTER, RetryAfter, spread_ms
from mpfn.functions.router.settings import RouterSettings


def test_the_wait_is_spread_evenly_around_the_second() -> None:
    assert spread_ms(1.0, 0.5, 0.0) == 500
    assert spread_ms(1.0, 0.5, 0.5) == 1000
    assert spread_ms(1.0, 0.5, 0.999999) == 1500
    assert spread_ms(1.0, 0.0, 0.73) == 1000
    assert spread_ms(2.0, 0.25, 0.0) == 1500


def test_draws_say_both_headers_and_how_soon_a_client_may_send() -> None:
    retry = RetryAfter(0.5, random.Random(7))
    draws = [retry.draw() for _ in range(200)]
    values = []
    for wait in draws:
        headers = dict(wait.headers)
        assert headers[b"retry-after"] == b"1"
        ms = int(headers[b"retry-after-ms"])
        assert 500 <= ms <= 1500
        assert wait.early_s == min(ms / 1000.0, 1.0)  # honoring either header is on time
        values.append(ms)
    assert min(values) < 600 and max(values) > 1400  # spread over the whole range
    assert 900 < sum(values) / len(values) < 1100  # on average the same second


def test_no_spread_says_only_retry_after() -> None:
    wait = RetryAfter(0.0).draw()
    assert wait.headers == (RETRY_AFTER,)
    assert wait.early_s == 1.0


@pytest.mark.parametrize("spread", [-0.1, 1.0, 2.0])
def test_a_spread_outside_zero_to_one_is_refused(spread: float) -> None:
    with pytest.raises(ValueError, match="spread"):
        RetryAfter(spread)
    with pytest.raises(ValueError, match="retry_spread"):
        RouterSettings.from_env({"MPFN_ROUTER_RETRY_SPREAD": str(spread)})


def test_the_spread_is_a_setting() -> None:
    assert RouterSettings().retry_spread == 0.5
    assert RouterSettings.from_env({"MPFN_ROUTER_RETRY_SPREAD": "0"}).retry_spread == 0.0
