"""SC-002 measured: seconds from ``kill -9`` of the main process to ``active`` again, 20 times,
on a real systemd in private namespaces with the deployed unit (RestartSec=10).

Run as root: ``make bench-systemd`` (``python -m bench systemd``).
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from tests.tgstream.systemd import test_deploy_systemd as setup
from tests.tgstream.systemd.harness import booted

from bench.common import provenance, summary

ROUNDS = 20


def run(machine: str, rounds: int = ROUNDS) -> str:
    share = Path(tempfile.mkdtemp(prefix="tgstream-bench-systemd-"))
    setup.prepare(share)
    times: list[float] = []
    with booted(share, setup.ROOT) as sd:
        setup.first_deploy(sd, "bench")
        for n in range(rounds):
            before = sd.show(setup.UNIT, "MainPID")["MainPID"]
            killed = time.monotonic()
            os.kill(sd.host_pid(setup.UNIT), signal.SIGKILL)
            sd.wait_active(setup.UNIT, 30, since_pid=before)
            times.append(time.monotonic() - killed)
            print(f"restart {n + 1}/{rounds}: {times[-1]:.2f}s", flush=True)
    within = sum(1 for t in times if 10.0 <= t <= 12.0)
    return (
        provenance("`make bench-systemd` (`python -m bench systemd`, as root)", machine) + "\n\n"
        "| measure | result | target |\n|---|---|---|\n"
        f"| `kill -9` of the main process to `active` again (n={len(times)}) | "
        f"{summary(times)} s, min {min(times):.3f} s | 10-12 s in 95%: "
        f"{within}/{len(times)} {'met' if within >= 0.95 * len(times) else '**missed**'} |\n\n"
        "How: the deployed `tg_video_streamer.service` (RestartSec=10, Type=notify) on a real "
        "systemd booted as PID 1 in private namespaces (`tests/tgstream/systemd/harness.py`); "
        "the clock runs from the SIGKILL to `ActiveState=active` with a new MainPID, which "
        "with Type=notify means the new process has sent READY=1 (its preview output is on "
        "air). Each figure is RestartSec plus the start-up to the first frame."
    )
