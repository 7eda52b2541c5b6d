"""Deployment proven on a real systemd (PID 1 in private namespaces; see ``harness``).

One systemd and one deploy for the module; the tests run in file order and build on each other:
deploy (alerts configured, a newer kurigram offered beside the pinned one), the release venv,
hardening, the working directory, crash restarts, watchdog, a clean stop, the yt-dlp timer, the
CI check, rollback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tgstream.systemd.harness import Systemd, booted, copy_sources, unavailable
from tgstream.adapters.demo import make_clip

pytestmark = [pytest.mark.systemd, pytest.mark.slow]
if why := unavailable():
    pytestmark.append(pytest.mark.skip(reason=f"systemd in namespaces unavailable: {why}"))

ROOT = Path(__file__).resolve().parents[3]
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
UNIT = "tg_video_streamer.service"
SHARE_ROOT = "/run/share"
DEPLOY_ROOT = f"{SHARE_ROOT}/opt/tg_video_streamer"
PIP_ARGS = "--no-index --find-links /run/src/.cache/wheelhouse"
# The deploy is also offered a newer, broken kurigram: only the constraints keep it out.
DEPLOY_PIP_ARGS = f"{PIP_ARGS} --find-links {SHARE_ROOT}/decoys"
CONSTRAINTS = ROOT / "deploy" / "constraints-tgstream.txt"
STATE = "/var/lib/tg_video_streamer"
# Alerts configured: the alerter's imports load at start (httpx was once missing from the
# release venv, and the service crash-looped). Nothing listens on port 9: no alert is due.
SETTINGS = """\
OUTPUT=preview
PREVIEW_PORT=8080
PROMETHEUS_PORT=9090
PLAYLIST_FILE={root}/media/playlist.txt
SESSION_STRING=
LOG_LEVEL=INFO
ALERT_BOT_TOKEN=123456:deploy-test-token
ALERT_CHAT_ID=1
ALERT_API_URL=http://127.0.0.1:9
"""


def deploy(sd: Systemd, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return sd.run(
        f"{SHARE_ROOT}/src/scripts/remote_deploy.sh",
        *args,
        env={
            "DEPLOY_ROOT": DEPLOY_ROOT,
            "PIP_ARGS": DEPLOY_PIP_ARGS,
            "PIP_NO_CACHE_DIR": "1",
            "PYTHON": "/usr/bin/python3",  # Debian's: the test runner's may live under /root
        },
        timeout=timeout,
    )


def prepare(share: Path) -> None:
    """The share a deployment runs from: the sources, a clip and its playlist, the first .env."""
    copy_sources(ROOT, share / "src")
    media = share / "opt" / "tg_video_streamer" / "media"
    media.mkdir(parents=True)
    make_clip(media / "clip.mp4", 4)
    media.chmod(0o755)
    (media / "playlist.txt").write_text(f"{DEPLOY_ROOT}/media/clip.mp4\n")
    (share / "first.env").write_text(SETTINGS.format(root=DEPLOY_ROOT))
    decoys = share / "decoys"
    decoys.mkdir()
    _broken_wheel(decoys, "kurigram", "pyrogram", "99.0")


def first_deploy(sd: Systemd, release: str) -> None:
    done = deploy(
        sd,
        "--source",
        f"{SHARE_ROOT}/src",
        "--env",
        f"{SHARE_ROOT}/first.env",
        "--release",
        release,
    )
    assert f"deployed {release}" in done.stdout, done.stdout + done.stderr
    sd.wait_active(UNIT, 60)


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Systemd]:
    assert (WHEELHOUSE / ".complete").exists(), "run through make: it builds .cache/wheelhouse"
    share = tmp_path_factory.mktemp("systemd")
    prepare(share)
    with booted(share, ROOT) as systemd:
        yield systemd


@pytest.fixture(scope="module")
def deployed(sd: Systemd) -> str:
    first_deploy(sd, "r1")
    return "r1"


def test_the_deployed_service_runs_as_tgstream_hardened_with_a_private_env(
    sd: Systemd, deployed: str
) -> None:
    props = sd.show(UNIT, "User", "MainPID", "ActiveState")
    assert props["User"] == "tgstream"
    pid = props["MainPID"]
    uid = sd.run("stat", "-c", "%U", f"/proc/{pid}").stdout.strip()
    assert uid == "tgstream"
    env = sd.run("stat", "-c", "%a %U:%G", f"{DEPLOY_ROOT}/shared/.env").stdout.split()
    assert env == ["600", "tgstream:tgstream"]
    assert sd.run("readlink", f"{DEPLOY_ROOT}/current").stdout.strip() == "releases/r1"
    # Inside the service's sandbox /usr is read-only, even for root entering it.
    write = sd.run("nsenter", "-t", pid, "-m", "touch", "/usr/tgstream-was-here", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    # Metrics answer, and READY=1 came once the preview was on air.
    metrics = _fetch(sd, "http://127.0.0.1:9090/metrics")
    assert "streams_played_total" in metrics
    status = json.loads(_fetch(sd, "http://127.0.0.1:9090/status"))
    assert status["state"] in ("streaming", "slate")
    journal = sd.run("journalctl", "-u", UNIT, "--no-pager", "-o", "cat").stdout
    assert re.search(r"systemd start \d+ of this host \(invocation [0-9a-f]+\)", journal), journal


def _fetch(sd: Systemd, url: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        done = sd.run(
            f"{DEPLOY_ROOT}/current/venv/bin/python",
            "-c",
            "import sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=5).read().decode())",
            check=False,
        )
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stderr
            return done.stdout
        time.sleep(0.5)


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


IMPORT_ALL = """\
import importlib, pkgutil, opskit, tgstream
walk = pkgutil.walk_packages
names = [m.name for p in (opskit, tgstream) for m in walk(p.__path__, p.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(len(names), " ".join(sorted(names)))
"""


def test_the_release_venv_is_the_pinned_set_and_runs_every_module(
    sd: Systemd, deployed: str
) -> None:
    venv = f"{DEPLOY_ROOT}/current/venv"
    freeze = sd.run(
        f"{venv}/bin/python", "-m", "pip", "freeze", "--disable-pip-version-check",
        "--exclude", "tgstream-chat4all",
    ).stdout  # fmt: skip
    # Exactly what the constraints pin: kurigram 2.2.x, not the 99.0 that was also offered.
    assert _pins(freeze) == _pins(CONSTRAINTS.read_text())
    as_service = ("runuser", "-u", "tgstream", "--")
    imported = sd.run(*as_service, f"{venv}/bin/python", "-c", IMPORT_ALL).stdout
    count, names = imported.split(" ", 1)
    assert int(count) >= 30
    for module in ("tgstream.adapters.alerts", "tgstream.adapters.tgcalls", "tgstream.cli"):
        assert module in names.split()
    version = sd.run(*as_service, f"{venv}/bin/tgstream", "version").stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version), version
    # `tgstream check` as the service would run it (another preview port: the service has 8080).
    check_env = Path(sd.share) / "check.env"
    check_env.write_text(
        SETTINGS.format(root=DEPLOY_ROOT).replace("PREVIEW_PORT=8080", "PREVIEW_PORT=8081")
    )
    check_env.chmod(0o644)
    check = sd.run(
        *as_service, f"{venv}/bin/tgstream", "check", "--env-file", f"{SHARE_ROOT}/check.env",
        check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"^yt-dlp\tPASS\t", check.stdout, re.M), check.stdout
    assert "checks passed, 0 checks failed" in check.stdout


def test_a_console_script_without_its_extra_says_which_extra_to_install(
    sd: Systemd, deployed: str
) -> None:
    # chat4all's console script is installed with the package, its extra is not.
    chat4all = sd.run(f"{DEPLOY_ROOT}/current/venv/bin/chat4all", "--help", check=False)
    assert chat4all.returncode == 5, chat4all.stdout + chat4all.stderr
    assert "chat4all needs the [chat4all] extra" in chat4all.stderr
    assert "pip install 'tgstream-chat4all[chat4all]'" in chat4all.stderr
    assert "Traceback" not in chat4all.stderr
    # And tgstream from the package without its extra: a venv of the base dependencies only.
    bare = "/tmp/bare-venv"
    sd.run("/usr/bin/python3", "-m", "venv", bare)
    sd.run(
        f"{bare}/bin/pip", "install", "--quiet", "--disable-pip-version-check", *PIP_ARGS.split(),
        "-c", f"{SHARE_ROOT}/src/deploy/constraints-tgstream.txt", f"{SHARE_ROOT}/src",
        env={"PIP_NO_CACHE_DIR": "1"},
        timeout=600,
    )  # fmt: skip
    tgstream = sd.run(f"{bare}/bin/tgstream", "version", check=False)
    assert tgstream.returncode == 4, tgstream.stdout + tgstream.stderr
    assert "tgstream needs the [tgstream] extra" in tgstream.stderr
    assert "kurigram" in tgstream.stderr and "httpx" in tgstream.stderr
    assert "Traceback" not in tgstream.stderr


def test_the_service_runs_in_its_writable_state_directory(sd: Systemd, deployed: str) -> None:
    pid = sd.show(UNIT, "MainPID")["MainPID"]
    assert sd.run("readlink", f"/proc/{pid}/cwd").stdout.strip() == STATE
    # kurigram's own code for an RPC error it does not know, run as the service: the service's
    # mount namespace (ProtectSystem=strict), its user, its working directory (nsenter -w).
    unknown = (
        "from pyrogram import raw\n"
        "from pyrogram.errors import RPCError\n"
        "try:\n"
        "    RPCError.raise_it(raw.types.RpcError(error_code=400, "
        "error_message='TGSTREAM_DEPLOY_TEST'), raw.functions.help.GetConfig)\n"
        "except RPCError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    raised = sd.run(
        "nsenter", "-t", pid, "-m", "-w", "--",
        "setpriv", "--reuid=tgstream", "--regid=tgstream", "--clear-groups",
        f"{DEPLOY_ROOT}/current/venv/bin/python", "-c", unknown,
    )  # fmt: skip
    assert raised.stdout.strip() == "BadRequest", raised.stdout + raised.stderr
    written = sd.run("cat", f"{STATE}/unknown_errors.txt").stdout
    assert "TGSTREAM_DEPLOY_TEST" in written
    sd.run("rm", f"{STATE}/unknown_errors.txt")


def test_the_unit_scores_at_most_2_and_verifies_clean(sd: Systemd, deployed: str) -> None:
    score = sd.run("systemd-analyze", "security", UNIT, "--no-pager").stdout
    value = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", score).group(1))  # type: ignore[union-attr]
    assert value <= 2.0, score
    verify = sd.run(
        "systemd-analyze",
        "verify",
        UNIT,
        "yt-dlp-update.service",
        "yt-dlp-update.timer",
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr


def test_kill_9_is_restarted_after_restartsec_and_on_air_soon_after(
    sd: Systemd, deployed: str
) -> None:
    # The 10-12 s target of SC-002 (95% of restarts) is measured by `make bench-systemd`
    # (docs/benchmarks.md); here, on a machine busy with other tests, a generous bound: the
    # restart comes from RestartSec=10, and the new process is on air within 5 s of it.
    for _ in range(3):
        before = sd.show(UNIT, "MainPID", "NRestarts")
        killed = time.monotonic()
        host_pid = sd.host_pid(UNIT)
        os.kill(host_pid, signal.SIGKILL)
        sd.wait_active(UNIT, 20, since_pid=before["MainPID"])
        took = time.monotonic() - killed
        assert 10.0 <= took <= 15.0, f"active again after {took:.2f}s"
        after = sd.show(UNIT, "NRestarts")
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1


def test_a_hung_process_is_restarted_by_the_watchdog(sd: Systemd, deployed: str) -> None:
    dropin = Path(sd.share) / "etc" / "systemd" / "system" / f"{UNIT}.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "watchdog.conf").write_text("[Service]\nWatchdogSec=4\nRestartSec=1\n")
    try:
        sd.run("systemctl", "daemon-reload")
        sd.run("systemctl", "restart", UNIT)
        sd.wait_active(UNIT, 60)
        time.sleep(6)  # pings flow: a healthy service outlives several watchdog periods
        before = sd.show(UNIT, "MainPID", "NRestarts")
        assert sd.show(UNIT, "ActiveState")["ActiveState"] == "active"
        os.kill(sd.host_pid(UNIT), signal.SIGSTOP)  # hung: no more pings
        results = set()
        deadline = time.monotonic() + 30
        while "watchdog" not in results and time.monotonic() < deadline:
            results.add(sd.show(UNIT, "Result")["Result"])
            time.sleep(0.1)
        assert "watchdog" in results, results
        sd.wait_active(UNIT, 30, since_pid=before["MainPID"])
        assert int(sd.show(UNIT, "NRestarts")["NRestarts"]) > int(before["NRestarts"])
    finally:
        shutil.rmtree(dropin)
        sd.run("systemctl", "daemon-reload")
        sd.run("systemctl", "restart", UNIT)
        sd.wait_active(UNIT, 60)


def test_a_stop_reaches_the_main_process_which_stops_its_children(
    sd: Systemd, deployed: str
) -> None:
    assert sd.show(UNIT, "KillMode")["KillMode"] == "mixed"
    props = sd.show(UNIT, "MainPID", "ControlGroup")
    procs = sd.run("cat", f"/sys/fs/cgroup{props['ControlGroup']}/cgroup.procs").stdout.split()
    children = [p for p in procs if p != props["MainPID"]]
    assert children, "the preview runs ffmpeg: the service should have children"
    cursor = sd.run("journalctl", "-u", UNIT, "-n", "0", "--show-cursor", "--no-pager").stdout
    after = cursor.strip().rsplit("-- cursor: ", 1)[1]
    try:
        sd.run("systemctl", "stop", UNIT, timeout=60)
        stopped = sd.show(UNIT, "Result", "ExecMainStatus", "ActiveState")
        journal = sd.run(
            "journalctl", "-u", UNIT, f"--after-cursor={after}", "--no-pager", "-o", "cat"
        ).stdout
        assert stopped == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}
        # Only the service got SIGTERM (KillMode=mixed); it ended its children itself, then
        # said so; systemd had nothing left to kill.
        assert "SIGTERM received; stopping" in journal, journal
        assert "tgstream stopped, children ended (exit code 0)" in journal, journal
        assert "Killing process" not in journal and "SIGKILL" not in journal, journal
        for child in children:
            assert sd.run("kill", "-0", child, check=False).returncode != 0, f"{child} lives"
    finally:
        sd.run("systemctl", "start", UNIT, timeout=120)
        sd.wait_active(UNIT, 60)


def _broken_wheel(directory: Path, dist: str, module: str, version: str) -> None:
    """A wheel of ``dist`` that installs but cannot run (a failing update, a bad release)."""
    stem = f"{dist.replace('-', '_')}-{version}"
    with zipfile.ZipFile(directory / f"{stem}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{module}/__init__.py", "raise ImportError('broken release')\n")
        whl.writestr(f"{module}/__main__.py", "raise SystemExit('broken release')\n")
        info = f"{stem}.dist-info"
        whl.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        )
        whl.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(f"{info}/RECORD", "")


def test_the_yt_dlp_timer_and_its_update(sd: Systemd, deployed: str) -> None:
    timer = sd.show("yt-dlp-update.timer", "NextElapseUSecRealtime", "ActiveState")
    assert timer["ActiveState"] == "active"
    nxt = sd.run("date", "-u", "-d", timer["NextElapseUSecRealtime"], "+%a %H:%M:%S").stdout.strip()
    assert nxt == "Sun 02:00:00", timer

    bad = Path(sd.share) / "badindex"
    bad.mkdir()
    _broken_wheel(bad, "yt-dlp", "yt_dlp", "9999.1")
    for wheel in WHEELHOUSE.glob("yt_dlp-*.whl"):
        shutil.copy(wheel, bad)
    venv = f"{DEPLOY_ROOT}/current/venv"
    old = sd.run(f"{venv}/bin/python", "-m", "yt_dlp", "--version").stdout.strip()
    sd.run("mkdir", "-p", "/var/lib/prometheus/node-exporter")
    dropin = Path(sd.share) / "etc" / "systemd" / "system" / "yt-dlp-update.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    try:
        for index, expect in ((PIP_ARGS, 0), (f"--no-index --find-links {SHARE_ROOT}/badindex", 1)):
            (dropin / "index.conf").write_text(f'[Service]\nEnvironment="YTDLP_PIP_ARGS={index}"\n')
            sd.run("systemctl", "daemon-reload")
            started = sd.run(
                "systemctl", "start", "yt-dlp-update.service", check=False, timeout=600
            )
            assert (started.returncode != 0) == bool(expect), started.stderr
            log = sd.run("cat", "/var/log/yt-dlp-update.log").stdout
            metric = sd.run("cat", "/var/lib/prometheus/node-exporter/ytdlp_update.prom").stdout
            assert f"ytdlp_update_success {1 - expect}" in metric, metric
            assert f'ytdlp_update_info{{version="{old}"}} 1' in metric
            assert re.search(r"^\d{4}-\d\d-\d\dT\S+Z yt-dlp-update: ", log, re.M), log
            # The broadcast was not touched, and yt-dlp still works as before.
            assert sd.show(UNIT, "ActiveState")["ActiveState"] == "active"
            now = sd.run(f"{venv}/bin/python", "-m", "yt_dlp", "--version").stdout.strip()
            assert now == old
        assert "failed the smoke test; reinstalling" in log
        assert f"rolled back to yt-dlp {old}" in log
    finally:
        shutil.rmtree(dropin)
        sd.run("systemctl", "daemon-reload")


def test_check_service_active_passes_on_a_healthy_unit_and_fails_on_a_crash_loop(
    sd: Systemd, deployed: str
) -> None:
    script = f"{DEPLOY_ROOT}/current/ci/check_service_active.sh"
    ok = sd.run(script, "tg_video_streamer", "60")
    assert "is active (stable for 5s)" in ok.stdout
    crashy = Path(sd.share) / "etc" / "systemd" / "system" / "crashy.service"
    crashy.write_text(
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sh -c 'echo dying; exit 3'\n"
        "Restart=always\nRestartSec=1\n"
    )
    sd.run("systemctl", "daemon-reload")
    sd.run("systemctl", "start", "crashy.service", check=False)
    began = time.monotonic()
    bad = sd.run(script, "crashy", "8", check=False)
    took = time.monotonic() - began
    sd.run("systemctl", "stop", "crashy.service", check=False)
    crashy.unlink()
    assert bad.returncode == 1
    assert took < 12
    assert "not active" in bad.stderr
    assert "journal" in bad.stderr


def test_rollback_moves_current_back_and_a_session_writer_waits_for_the_lock(
    sd: Systemd, deployed: str
) -> None:
    done = deploy(sd, "--source", f"{SHARE_ROOT}/src", "--release", "r2")
    assert "deployed r2" in done.stdout
    assert sd.run("readlink", f"{DEPLOY_ROOT}/current").stdout.strip() == "releases/r2"
    sd.wait_active(UNIT, 60)
    # The settings survived the deploy without --env.
    assert "OUTPUT=preview" in sd.run("cat", f"{DEPLOY_ROOT}/current/.env").stdout

    marks: dict[str, float] = {}
    rollback = threading.Thread(
        target=lambda: (
            deploy(sd, "--rollback"),
            marks.__setitem__("deploy_done", time.monotonic()),
        )
    )
    rollback.start()
    lock = f"{DEPLOY_ROOT}/shared/.env.lock"
    deadline = time.monotonic() + 30
    while sd.run("flock", "-n", lock, "true", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the deploy never took the lock"
        time.sleep(0.01)
    writer = sd.run(
        f"{DEPLOY_ROOT}/current/venv/bin/python",
        "-c",
        "import time; from pathlib import Path; from opskit.envfile import update_env; "
        f"update_env(Path('{DEPLOY_ROOT}/current/.env'), {{'LOG_LEVEL': 'DEBUG'}}); "
        "print(time.monotonic())",
    )
    rollback.join(120)
    wrote_at = float(writer.stdout.strip())
    assert "deploy_done" in marks
    assert sd.run("readlink", f"{DEPLOY_ROOT}/current").stdout.strip() == "releases/r1"
    sd.wait_active(UNIT, 60)
    env = sd.run("cat", f"{DEPLOY_ROOT}/shared/.env").stdout
    assert "LOG_LEVEL=DEBUG" in env and "OUTPUT=preview" in env
    mode = sd.run("stat", "-c", "%a %U", f"{DEPLOY_ROOT}/shared/.env").stdout.split()
    assert mode == ["600", "tgstream"]
    # CLOCK_MONOTONIC is shared with the namespace: the writer finished after the deploy
    # released the lock, not while it held it.
    assert wrote_at >= marks["deploy_done"] - 0.5
