"""The ``tgstream run`` process: the supervisor, its exporter, and the pulse systemd listens to.

::

    serve ─┬─ Metrics + MetricsServer (/metrics, /healthz, /status; own threads)
           ├─ pulse task: /healthz heartbeat, READY=1 once on air or degraded, WATCHDOG=1 while
           │  the pipeline moves
           └─ Supervisor (session watch) ─ Engine (play loop) ─ output
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry

from opskit.metrics_server import MetricsServer
from opskit.procs import Children
from opskit.systemd import Notifier, restart_count
from tgstream import __version__
from tgstream.bootstrap import build_supervisor
from tgstream.config import Settings, load_settings
from tgstream.errors import TgstreamError
from tgstream.metrics import Metrics
from tgstream.session_cli import regenerate
from tgstream.supervisor import Supervisor

__all__ = ["serve", "WATCHDOG_STALL", "SERVICE_NAME"]

log = logging.getLogger("tgstream.service")

WATCHDOG_STALL: Final = 30.0
"""Seconds without a unit written before the watchdog pings stop (slate included)."""
SERVICE_NAME: Final = "tg_video_streamer"


async def serve(settings: Settings, env_file: Path, stop: asyncio.Event) -> int:
    """Broadcast until ``stop``; returns the exit code."""
    log.info(
        "tgstream %s starting: output=%s quality=%s playlist=%s",
        __version__,
        settings.output,
        settings.VIDEO_QUALITY,
        settings.PLAYLIST_FILE,
    )
    _log_restarts()
    children = Children()

    def current_settings() -> Settings:
        return load_settings(env_file if env_file.exists() else None)

    async def regen() -> int:
        return await regenerate(env_file, current_settings())

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    metrics = Metrics(CollectorRegistry(), output=settings.output)
    exporter = _start_exporter(settings, metrics)
    pulse: asyncio.Task[None] | None = None
    code: int | None = None
    try:
        supervisor = await build_supervisor(
            settings,
            children,
            env_file=env_file,
            events=metrics,
            session_events=metrics,
            regen=regen if interactive else None,
            call_events=metrics,
        )
        pulse = asyncio.create_task(_pulse(supervisor, metrics), name="pulse")
        code = await supervisor.run(stop)
    except TgstreamError as exc:
        log.error("%s", exc)
        code = int(exc.exit_code)
    finally:
        if pulse is not None:
            pulse.cancel()
        await children.close()
        metrics.state("stopping")  # stream_up 0, also in the textfile written on close
        if exporter is not None:
            exporter.close()
        if code is not None:  # else a traceback follows
            log.info("tgstream stopped, children ended (exit code %d)", code)
    return code


def _log_restarts() -> None:
    """Under systemd: which start this is, so restarts can be audited from the log alone."""
    invocation = os.environ.get("INVOCATION_ID")
    if not invocation:
        return
    starts = "?"
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        counter = Path(state) / "starts"
        with contextlib.suppress(OSError, ValueError):
            count = int(counter.read_text()) + 1 if counter.exists() else 1
            counter.write_text(f"{count}\n")
            starts = str(count)
    log.info(
        "systemd start %s of this host (invocation %s); NRestarts=%s",
        starts,
        invocation,
        restart_count(SERVICE_NAME),
    )


def _start_exporter(settings: Settings, metrics: Metrics) -> MetricsServer | None:
    if settings.PROMETHEUS_PORT == 0:
        log.info("metrics exporter off (PROMETHEUS_PORT=0)")
        return None
    exporter = MetricsServer(
        metrics.registry,
        settings.PROMETHEUS_HOST,
        settings.PROMETHEUS_PORT,
        routes={"/healthz": metrics.health, "/status": metrics.status},
        span=settings.PROMETHEUS_PORT_SPAN,
        textfile=settings.METRICS_FILE,
        interval=settings.METRICS_FILE_INTERVAL,
    )
    exporter.start()
    return exporter


async def _pulse(
    supervisor: Supervisor, metrics: Metrics, every: float = 1.0, until_ready: float = 0.05
) -> None:
    """The main loop's pulse: /healthz, and systemd's READY=1 and watchdog pings.

    A watchdog ping goes out only while the pipeline moves (a unit written within
    ``WATCHDOG_STALL`` seconds, or degraded): a hung pipeline is restarted, not left silent.
    """
    notifier = Notifier()
    announced = False
    ready = False
    last_ping = 0.0
    withheld = False
    while True:
        metrics.beat()
        now = time.monotonic()
        if not announced and supervisor.ready():
            ready = True
            state = "degraded" if supervisor.status.degraded else "on air"
            announced = notifier.notify(f"READY=1\nSTATUS=tgstream {state}")
        if notifier.watchdog is not None and now - last_ping >= notifier.watchdog / 3:
            if supervisor.alive(now, WATCHDOG_STALL):
                notifier.notify("WATCHDOG=1")
                last_ping, withheld = now, False
            elif not withheld:
                withheld = True
                log.error(
                    "no output for %.0fs: withholding watchdog pings, systemd will restart "
                    "the service",
                    WATCHDOG_STALL,
                )
        # Until the service is ready, look often: systemd counts a (re)start as done only once
        # READY=1 is out, and a 1 s pulse added up to 1 s to every restart.
        await asyncio.sleep(every if ready else until_ready)
