"""The service side of systemd's notify protocol: readiness, status, watchdog pings.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op, so the same code runs under
``make run``, in tests and under ``Type=notify``.

>>> Notifier(env={}).notify("READY=1")
False
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Mapping

__all__ = ["Notifier", "restart_count"]

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog: float | None = int(usec) / 1e6 if usec.isdigit() and mine else None
        """Seconds systemd waits for a ping (``WatchdogSec=``); ``None`` when not asked."""

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, message: str) -> bool:
        """Send ``message`` (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``); True if sent."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError as exc:
            log.warning("cannot notify systemd (%s): %s", message.split("=", maxsplit=1)[0], exc)
            return False
        return True


def restart_count(unit: str, timeout: float = 2.0) -> str:
    """``NRestarts`` of ``unit`` as systemd reports it, or why it cannot be read from here."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["systemctl", "show", "--property=NRestarts", "--value", unit],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        value = done.stdout.strip()
        if done.returncode == 0 and value.isdigit():
            return value
    return "unknown (systemctl show is not reachable from inside the unit)"
