"""The tgstream integration suite on a busy machine: ``ROUNDS`` runs in a row while ``HOGS``
x264 encodes (each as many threads as it likes) compete for the same cores.

This is not a benchmark of speed: it proves that the end-to-end tests assert what viewers get
in ways that hold when the machine is loaded (issue 12, section 5). The hogs run from before
the first round to after the last; their CPU seconds are reported so a reader can tell they
really competed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import provenance, summary

ROUNDS = int(os.environ.get("LOADED_ROUNDS", "3"))
HOGS = 2
SUITE = os.environ.get("LOADED_SUITE", "tests/tgstream/integration")
HOG_ARGV = [
    "ffmpeg", "-nostdin", "-loglevel", "error", "-re",
    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
    "-c:v", "libx264", "-preset", "medium", "-f", "null", "-",
]  # fmt: skip
"""An endless 720p30 x264 encode; ``-re`` keeps it from ending, x264 still wants ~1+ core."""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _suite(root: Path) -> tuple[int, str, float]:
    """One run of the integration suite: (pytest's exit code, its summary line, seconds)."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if re.search(r"passed|failed|error", line)]
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    summary_line = (lines[-1] if lines else done.stdout[-300:]).strip("= ")
    if failures:
        summary_line += " (" + "; ".join(failures) + ")"
    return done.returncode, summary_line, time.monotonic() - began


def run(machine: str) -> str:
    root = Path(__file__).resolve().parent.parent
    hogs = [
        subprocess.Popen(HOG_ARGV, stdout=subprocess.DEVNULL, start_new_session=True)
        for _ in range(HOGS)
    ]
    rows = []
    try:
        for n in range(1, ROUNDS + 1):
            before = sum(_cpu_seconds(h.pid) for h in hogs)
            code, line, seconds = _suite(root)
            hog_cpu = sum(_cpu_seconds(h.pid) for h in hogs) - before
            assert all(h.poll() is None for h in hogs), "a load process exited during the run"
            rows.append((n, code, line, seconds, hog_cpu))
            print(f"round {n}: exit {code}, {line}, {seconds:.0f} s", file=sys.stderr)
    finally:
        for hog in hogs:
            os.killpg(hog.pid, signal.SIGKILL)
            hog.wait()
    lines = [
        provenance("`make test-loaded` (`python -m bench loaded`)", machine),
        "",
        f"`pytest {SUITE}` {ROUNDS} times in a row while {HOGS} endless x264 encodes "
        f"(`{' '.join(HOG_ARGV)}`) ran beside it on the same cores.",
        "",
        "| round | pytest exit | result | wall (s) | CPU the encodes took meanwhile (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {c} | {ln} | {s:.0f} | {h:.0f} |" for n, c, ln, s, h in rows]
    failed = [n for n, c, *_ in rows if c != 0]
    lines += [
        "",
        f"Failed rounds: {', '.join(map(str, failed)) if failed else 'none'}. Wall time per "
        f"round: {summary([s for *_, s, _ in rows])}.",
    ]
    return "\n".join(lines)
