"""The rate limiter contract: every test runs over the in-process token buckets
(:class:`LocalRateLimiter`) and over the GCRA script in Redis (:class:`RedisRateLimiter`, keys
under a prefix of the test's own), so both keep the same limits: per key, per tenant, global, a
denied request counting against none, a sane Retry-After, and the refill at the limit's rate.

Most tests run on a fake clock (given to the Lua script as now); the last one on the real
clocks (Redis's own TIME), waiting for the refill as a condition."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import pytest

from chat4all.adapters.redis_state import RedisRateLimiter, redis_client
from chat4all.errors import RateLimited
from chat4all.service_layer.access import LocalRateLimiter, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Make(Protocol):
    def __call__(
        self,
        *,
        per_key: int = 0,
        per_tenant: int = 0,
        global_: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> RateLimiter:
        """A limiter with these limits; ``clock`` ``None``: the adapter's real clock."""
        ...


@pytest.fixture(params=["local", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    """Limiters of one adapter; on Redis under a prefix of this test's own, deleted after."""
    if request.param == "local":

        def local(
            *,
            per_key: int = 0,
            per_tenant: int = 0,
            global_: int = 0,
            clock: Callable[[], float] | None = None,
        ) -> RateLimiter:
            return LocalRateLimiter(per_key, global_, clock or time.monotonic, per_tenant)

        yield local
        return
    url: str = request.getfixturevalue("redis_url")
    client = redis_client(url, timeout=5.0)  # generous: a busy test box is no outage
    prefix = f"test:{uuid.uuid4().hex}:"

    def shared(
        *,
        per_key: int = 0,
        per_tenant: int = 0,
        global_: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> RateLimiter:
        return RedisRateLimiter(
            client,
            prefix,
            per_key=per_key,
            per_tenant=per_tenant,
            global_=global_,
            clock=clock,
            # a fallback that refuses everything: a test that passes got its answers from Redis
            fallback=LocalRateLimiter(per_key=0, global_=1, clock=lambda: 0.0),
            unavailable=_no_outage,
        )

    try:
        yield shared
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _no_outage() -> None:
    raise AssertionError("Redis did not answer")


async def granted(limiter: RateLimiter, key: str, tenant: str, times: int) -> int:
    """How many of ``times`` requests of ``key`` were granted."""
    count = 0
    for _ in range(times):
        try:
            await limiter.check(key, tenant)
        except RateLimited:
            continue
        count += 1
    return count


async def wait_of(limiter: RateLimiter, key: str, tenant: str) -> float:
    """0 when a request of ``key`` is granted, else the seconds it is told to wait."""
    try:
        await limiter.check(key, tenant)
    except RateLimited as exc:
        return exc.retry_after
    return 0.0


async def test_each_key_gets_its_own_limit(make: Make) -> None:
    limiter = make(per_key=3, clock=Clock())
    assert await granted(limiter, "k1", "t1", 5) == 3
    with pytest.raises(RateLimited, match="3 requests a minute for this key"):
        await limiter.check("k1", "t1")
    assert await granted(limiter, "k2", "t1", 5) == 3  # another key of the same tenant


async def test_a_tenant_limit_covers_all_its_keys(make: Make) -> None:
    limiter = make(per_key=100, per_tenant=3, clock=Clock())
    assert await granted(limiter, "k1", "t1", 2) == 2
    assert await granted(limiter, "k2", "t1", 2) == 1
    with pytest.raises(RateLimited, match="3 requests a minute for this tenant"):
        await limiter.check("k3", "t1")
    assert await granted(limiter, "k4", "t2", 4) == 3  # another tenant


async def test_the_global_limit_covers_all_keys_and_tenants(make: Make) -> None:
    limiter = make(per_key=100, per_tenant=100, global_=3, clock=Clock())
    assert await granted(limiter, "k1", "t1", 1) == 1
    assert await granted(limiter, "k2", "t2", 1) == 1
    assert await granted(limiter, "k3", "t3", 1) == 1
    with pytest.raises(RateLimited, match="global rate of 3 requests a minute"):
        await limiter.check("k4", "t4")


async def test_no_limit_set_grants_everything(make: Make) -> None:
    limiter = make(clock=Clock())
    assert await granted(limiter, "k1", "t1", 50) == 50


async def test_a_denied_request_counts_against_no_limit(make: Make) -> None:
    clock = Clock()
    limiter = make(per_key=2, global_=3, clock=clock)
    assert await granted(limiter, "k1", "t1", 2) == 2
    # k1 over its own limit, many times: the global limit keeps its last request for k2
    assert await granted(limiter, "k1", "t1", 10) == 0
    assert await granted(limiter, "k2", "t1", 1) == 1
    # now the global limit refuses k3, many times: k3's own limit is untouched
    assert await granted(limiter, "k3", "t1", 10) == 0
    clock.now += 20.0  # one request's worth of the global limit (3 a minute)
    assert await granted(limiter, "k3", "t1", 1) == 1


async def test_retry_after_says_when_the_next_request_is_granted(make: Make) -> None:
    clock = Clock()
    limiter = make(per_key=60, per_tenant=120, clock=clock)  # one a second, bursts of 60
    assert await granted(limiter, "k1", "t1", 60) == 60
    with pytest.raises(RateLimited) as limited:
        await limiter.check("k1", "t1")
    assert limited.value.retry_after == pytest.approx(1.0, abs=1e-3)
    clock.now += 0.9
    with pytest.raises(RateLimited) as again:
        await limiter.check("k1", "t1")
    assert again.value.retry_after == pytest.approx(0.1, abs=1e-3)
    clock.now += 0.1
    await limiter.check("k1", "t1")


async def test_the_longest_wait_of_the_limits_over_is_the_one_given(make: Make) -> None:
    clock = Clock()
    limiter = make(per_key=2, global_=6, clock=clock)  # a key: one each 30 s; all: each 10 s
    assert await granted(limiter, "k1", "t1", 2) == 2
    assert await granted(limiter, "k2", "t1", 2) == 2
    assert await granted(limiter, "k3", "t1", 2) == 2
    with pytest.raises(RateLimited, match="for this key") as limited:
        await limiter.check("k1", "t1")  # over both: 30 s for the key, 10 s for all
    assert limited.value.retry_after == pytest.approx(30.0, abs=1e-3)


async def test_a_limit_refills_at_its_rate(make: Make) -> None:
    clock = Clock()
    limiter = make(per_key=60, clock=clock)
    assert await granted(limiter, "k1", "t1", 61) == 60
    clock.now += 10.0
    assert await granted(limiter, "k1", "t1", 20) == 10
    clock.now += 3600.0  # never more than a minute's worth at once
    assert await granted(limiter, "k1", "t1", 100) == 60


async def test_a_limit_refills_on_the_real_clock(make: Make) -> None:
    limiter = make(per_key=600)  # bursts of 600, then one each 0.1 s
    burst = 0
    while (wait := await wait_of(limiter, "k1", "t1")) == 0:
        burst += 1  # more than the burst when the machine is slow: it refills meanwhile
        assert burst < 10_000, "never limited"
    assert burst >= 600
    assert 0 < wait <= 0.1
    started = time.monotonic()
    while (wait := await wait_of(limiter, "k1", "t1")) > 0:  # however busy the machine
        assert wait <= 0.1
        assert time.monotonic() - started < 5.0, "the limit did not refill"
