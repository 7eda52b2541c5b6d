"""Who holds an outbox row: a worker's id, and whether its process is known to be gone.

A worker id is ``host:pid:random`` (unique even for two workers of one process). A lease
normally ends by running out; but a process that restarts on the same host can tell at once
that its predecessor's rows are orphans (that pid no longer runs) and take them back without
waiting out the lease, so a one-process hub resends what a crash left in flight right away.
"""

from __future__ import annotations

import os
import secrets
import socket

__all__ = ["worker_id", "holder_gone"]


def worker_id() -> str:
    """``host:pid:random``: who holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` names a process of this host that no longer runs (False when it runs,
    when it is another host's, or when the id is not a worker id: only its lease can tell)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # runs, as another user
        return False
    return False
