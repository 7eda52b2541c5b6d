"""The notify protocol against a real datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from opskit.systemd import Notifier


def test_ready_and_watchdog_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "60000000"})
        assert notifier.watchdog == 60.0
        assert notifier.notify("READY=1\nSTATUS=on air")
        assert notifier.notify("WATCHDOG=1")
        assert server.recv(4096) == b"READY=1\nSTATUS=on air"
        assert server.recv(4096) == b"WATCHDOG=1"


def test_an_abstract_socket_name_is_understood() -> None:
    name = f"tgstream-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1")
        assert server.recv(64) == b"READY=1"


def test_outside_systemd_nothing_is_sent_and_the_watchdog_is_off() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog is None
    # A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog is None


def test_a_vanished_socket_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("READY=1") is False
