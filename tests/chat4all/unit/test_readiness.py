"""The readiness checks: each asked at once and bounded in time; a failed required check makes
the process not ready and is named in the reason, a failed optional one only degraded."""

from __future__ import annotations

import asyncio

import pytest

from chat4all.service_layer.readiness import Readiness


async def fine() -> None:
    return None


async def down() -> str:
    return "worker x stopped"


async def broken() -> None:
    raise ConnectionError("refused\nsecond line")


async def frozen() -> None:
    await asyncio.Event().wait()


async def test_required_failures_make_it_unready_and_optional_ones_degraded() -> None:
    readiness = Readiness(timeout=0.1)
    readiness.add("database", fine)
    readiness.add("tasks", down)
    readiness.add("nats", frozen, required=False)
    readiness.add("redis", broken, required=False)
    report = await readiness()
    assert not report.ready
    assert report.reason == "tasks: worker x stopped"
    assert report.degraded == ["nats", "redis"]
    assert report.body() == {
        "ready": False,
        "reason": "tasks: worker x stopped",
        "degraded": ["nats", "redis"],
        "checks": {
            "database": {"ok": True, "required": True, "detail": None},
            "tasks": {"ok": False, "required": True, "detail": "worker x stopped"},
            "nats": {"ok": False, "required": False, "detail": "no answer within 0.1 s"},
            "redis": {"ok": False, "required": False, "detail": "ConnectionError: refused"},
        },
    }
    readiness.require("redis")
    report = await readiness()
    assert report.reason == "tasks: worker x stopped; redis: ConnectionError: refused"
    assert report.degraded == ["nats"]


async def test_no_check_is_ready_and_a_name_is_added_once() -> None:
    readiness = Readiness()
    report = await readiness()
    assert report.ready and report.reason is None
    assert report.body() == {"ready": True, "degraded": [], "checks": {}}
    readiness.add("database", fine)
    assert "database" in readiness
    with pytest.raises(ValueError, match="exists already"):
        readiness.add("database", fine)
    with pytest.raises(KeyError):
        readiness.require("nats")
