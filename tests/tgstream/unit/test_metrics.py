"""Metrics into a fresh registry, asserted with get_sample_value; the exporter's fallbacks."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from opskit.metrics_server import MetricsServer
from tgstream.metrics import Metrics


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


def test_engine_and_session_events_become_metrics() -> None:
    now = [1000.0]
    m = Metrics(CollectorRegistry(), output="rtmp", clock=lambda: now[0])
    m.playlist_size(4)
    m.state("streaming")
    m.track_started("red.mp4", 0.42, None)
    now[0] = 1003.0
    m.track_ready("green.mp4")
    m.track_started("green.mp4", 0.1, 0.05)
    m.track_failed("not_found", "http://x/dead.mp4: HTTP 404")
    m.ffmpeg_restarted()
    m.reauth_attempt("dead")
    m.reauth_attempt("valid")
    m.session_state("valid")
    assert value(m, "streams_played_total") == 2
    assert value(m, "track_failures_total", reason="not_found") == 1
    assert value(m, "track_failures_total", reason="stall") == 0  # every reason is exported
    assert value(m, "ffmpeg_restarts_total") == 1
    assert value(m, "session_reauth_attempts_total", result="dead") == 1
    assert value(m, "session_reauth_attempts_total", result="unreachable") == 0
    assert value(m, "stream_up") == 1
    assert value(m, "playlist_items") == 4
    assert value(m, "current_track_started_timestamp_seconds") == 1003.0
    assert value(m, "last_error_timestamp_seconds") == 1003.0
    assert value(m, "track_start_seconds_count") == 2
    assert value(m, "track_change_gap_seconds_count") == 1
    assert value(m, "session_state", session_state="valid") == 1
    assert value(m, "session_state", session_state="dead") == 0
    build = next(s for s in m.registry.collect() if s.name == "build").samples[0]
    assert build.labels["output"] == "rtmp"
    code, status = m.status()
    assert code == 200
    assert status["current_track"] == {"title": "green.mp4", "started_at": 1003.0}
    assert status["next_track"] is None
    assert status["last_error"]["message"] == "ffmpeg restarted mid-track"


def test_degraded_mode_shows_in_gauges_and_status() -> None:
    m = Metrics(CollectorRegistry())
    m.state("streaming")
    m.degraded(True, "AUTH_KEY_UNREGISTERED: Telegram rejected SESSION_STRING")
    assert value(m, "degraded") == 1
    assert value(m, "stream_up") == 0
    assert value(m, "broadcast_state", broadcast_state="degraded") == 1
    _, status = m.status()
    assert status["degraded"] is True
    assert "AUTH_KEY_UNREGISTERED" in status["degraded_reason"]
    m.degraded(False, "")
    assert value(m, "degraded") == 0


def test_healthz_fails_when_the_loop_stops_ticking() -> None:
    now = [0.0]
    m = Metrics(CollectorRegistry(), clock=lambda: now[0])
    m.beat()
    assert m.health()[0] == 200
    now[0] = 16.0
    assert m.health()[0] == 503


@pytest.fixture
def taken() -> Iterator[list[int]]:
    """Three consecutive ports held by this test."""
    socks: list[socket.socket] = []
    for _ in range(50):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        base = first.getsockname()[1]
        socks = [first]
        try:
            for port in (base + 1, base + 2):
                sock = socket.socket()
                socks.append(sock)  # closed below even when its bind fails
                sock.bind(("127.0.0.1", port))
        except OSError:
            for sock in socks:
                sock.close()
            continue
        for sock in socks:
            sock.listen()
        break
    try:
        yield [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def test_a_taken_port_logs_an_error_and_the_next_free_one_serves(
    taken: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    m = Metrics(CollectorRegistry())
    server = MetricsServer(m.registry, "127.0.0.1", taken[0], span=5, routes={"/status": m.status})
    try:
        url = server.start()
        assert server.port is not None
        assert server.port > taken[-1]
        scrape = httpx.get(f"{url}/metrics", timeout=5)
        assert "streams_played_total 0.0" in scrape.text
        assert httpx.get(f"{url}/status", timeout=5).json()["state"] == "starting"
    finally:
        server.close()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"metrics port {taken[0]}" in errors[0].getMessage()
    assert f"served on port {server.port} instead of {taken[0]}" in caplog.text


def test_no_free_port_falls_back_to_a_textfile(
    taken: list[int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    m = Metrics(CollectorRegistry())
    m.track_started("x", 0.1, None)
    textfile = tmp_path / "collector" / "tgstream.prom"
    server = MetricsServer(
        m.registry, "127.0.0.1", taken[0], span=2, textfile=textfile, interval=0.05
    )
    try:
        assert server.start() == str(textfile)
        families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
        assert families["streams_played"].samples[0].value == 1
    finally:
        server.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(textfile) in w and "textfile" in w for w in warnings), warnings
    assert not list(textfile.parent.glob("*.prom.*"))  # no temporary files left


def test_the_textfile_left_after_exit_says_the_stream_is_down(
    taken: list[int], tmp_path: Path
) -> None:
    m = Metrics(CollectorRegistry())
    m.state("streaming")
    textfile = tmp_path / "tgstream.prom"
    server = MetricsServer(
        m.registry, "127.0.0.1", taken[0], span=2, textfile=textfile, interval=3600
    )
    server.start()

    def stream_up() -> float:
        families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
        return families["stream_up"].samples[0].value

    assert stream_up() == 1
    m.state("stopping")  # what `serve` does on its way out, before closing the exporter
    server.close()  # the interval (1 h) never came: only close can have written it
    assert stream_up() == 0
