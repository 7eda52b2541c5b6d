"""The exporter of a real `tgstream run` broadcasting into nginx-rtmp, and the monitoring files.

Scraped with a real HTTP client while the pipeline runs; checked with promtool, which `make`
installs from Debian's prometheus package.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.tgstream.harness import Nginx, free_port, on_air, start_service

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"


def scrape(url: str) -> tuple[str, float]:
    began = time.monotonic()
    answer = httpx.get(f"{url}/metrics", timeout=5)
    answer.raise_for_status()
    return answer.text, time.monotonic() - began


def samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@pytest.mark.rtmp
@pytest.mark.slow
def test_a_live_scrape_counts_tracks_and_passes_promtool(
    tmp_path: Path, media: Path, rtmp: Nginx
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    lines = [f"{media}/red.mp4", f"{media}/green.mp4", f"{media}/long-green.mp4"]
    with on_air(tmp_path, rtmp, lines, PROMETHEUS_PORT=str(port)) as (service, _reader):
        service.wait_for(r"now playing: \S*/long-green\.mp4", 40)
        text, took = scrape(url)
        status = httpx.get(f"{url}/status", timeout=5).json()
        health = httpx.get(f"{url}/healthz", timeout=5)
        assert service.wait(60) == 0, service.log
    # Tracks started up to the scrape: every "now playing" line up to long-green's own.
    started = len(re.findall(r"now playing: ", service.log.split("long-green.mp4 (")[0]))
    values = samples(text)
    assert values["streams_played_total"] == started == 3
    assert values["stream_up"] == 1
    assert values["playlist_items"] == 3
    assert values["track_start_seconds_count"] == 3
    assert took < 5.0
    assert health.status_code == 200
    assert health.json()["alive"] is True
    assert status["state"] == "streaming"
    assert status["current_track"]["title"].endswith("long-green.mp4")
    assert status["degraded"] is False

    promtool = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr
    assert promtool.stdout.strip() == "" and promtool.stderr.strip() == "", promtool.stderr

    # Every metric the rules and the dashboard use is one we export (or comes from elsewhere).
    exported = {name.split("{")[0] for name in values} | {
        f.name for f in text_string_to_metric_families(text)
    }
    external = {"up", "ytdlp_update_success"}
    used: set[str] = set()
    for path in (MONITORING / "tgstream-alerts.yml", MONITORING / "grafana-dashboard.json"):
        used |= set(
            re.findall(
                r"\b([a-z_]+(?:_total|_seconds|_bucket|_info|_up|_items))\b", path.read_text()
            )
        )
        used |= {
            m
            for m in ("degraded", "session_state", "stream_up", "call_state")
            if m in path.read_text()
        }
    assert used - exported - external == set()


def test_json_logs_parse_line_by_line_with_the_fields(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/red.mp4\n")
    service = start_service(
        tmp_path,
        {
            "PLAYLIST_FILE": str(playlist),
            "PREVIEW_PORT": str(free_port()),
            "LOOP": "0",
            "LOG_FORMAT": "json",
        },
    )
    assert service.wait(60) == 0, service.log
    docs = [json.loads(line) for line in service.lines if line.strip()]
    assert docs
    for doc in docs:
        assert {"ts", "level", "component", "message"} <= doc.keys(), doc
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"])
    assert any(d["component"] == "tgstream.engine" and "now playing" in d["message"] for d in docs)


def test_alert_rules_are_valid_and_each_alert_has_a_unit_test() -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", "tgstream-alerts.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", "tgstream-alerts.test.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    alerts = set(re.findall(r"- alert: (\w+)", (MONITORING / "tgstream-alerts.yml").read_text()))
    tested = set(
        re.findall(r"alertname: (\w+)", (MONITORING / "tgstream-alerts.test.yml").read_text())
    )
    assert len(alerts) == 7
    assert alerts == tested


def test_the_dashboard_is_valid_json_with_queries() -> None:
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    assert any("streams_played_total" in e for e in exprs)


def preview_port(metrics: int) -> str:
    """A free port for the preview that is none of those the exporter may move to from
    ``metrics`` (PROMETHEUS_PORT_SPAN, 10, above it): the kernel hands out free ports close
    together, and the preview's failing to bind would end the service."""
    while (found := free_port()) in range(metrics, metrics + 11):
        pass
    return str(found)


def test_the_service_moves_to_the_next_port_or_to_the_textfile(tmp_path: Path, media: Path) -> None:
    playlist = tmp_path / "playlist.txt"
    playlist.write_text(f"{media}/long-green.mp4\n")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        base = {"PLAYLIST_FILE": str(playlist), "PROMETHEUS_PORT": str(port)}

        service = start_service(tmp_path, {**base, "PREVIEW_PORT": preview_port(port)})
        try:
            error = service.wait_for(rf"ERROR .*metrics port {port} .* is taken", 30)
            moved = service.wait_for(r"metrics served on port (\d+) instead", 10)
            text, _ = scrape(f"http://127.0.0.1:{moved.group(1)}")
            assert "streams_played_total" in text
        finally:
            assert service.terminate() == 0
        assert "trying ports up to" in error.string

        textfile = tmp_path / "collector" / "tgstream.prom"
        service = start_service(
            tmp_path,
            {
                **base,
                "PREVIEW_PORT": preview_port(port),
                "PROMETHEUS_PORT_SPAN": "0",
                "METRICS_FILE": str(textfile),
                "METRICS_FILE_INTERVAL": "0.2",
            },
        )
        try:
            service.wait_for(r"WARNING .*no free metrics port .*writing metrics to", 30)
            service.wait_for(r"now playing", 30)
            # stream_up follows the preview's publisher: it turns 1 once the destination takes
            # the stream, a moment after the track started; wait for both.
            deadline = time.monotonic() + 10
            played = up = 0.0
            while (played < 1 or up < 1) and time.monotonic() < deadline:
                values = {
                    f.name: f.samples[0].value
                    for f in text_string_to_metric_families(textfile.read_text())
                    if f.samples
                }
                played, up = values["streams_played"], values["stream_up"]
                time.sleep(0.2)
            assert played == 1
            assert up == 1
        finally:
            assert service.terminate() == 0
        # node_exporter reads the file after we are gone: it must not say we are still up.
        families = text_string_to_metric_families(textfile.read_text())
        assert next(f for f in families if f.name == "stream_up").samples[0].value == 0
