"""Safe updates of a ``.env`` file: exclusive lock, backup, atomic replace.

Both writers of a live ``.env``, the session runner (``tgstream session new --write-env``) and
the deploy script, take the same lock: ``flock`` on ``<name>.lock`` beside the file (for
``/opt/app/.env`` that is ``/opt/app/.env.lock``). So two writers never interleave, and a
reader (the service re-reading ``.env`` in degraded mode) only ever sees the old file or the
new one, never a half-written one.

An update keeps every other line as it was (comments, blank lines, order, other keys), the
file's mode (a new file gets 0600) and, when we may, its owner. Before replacing, the current
file is copied to ``<name>.bak-YYYYmmddTHHMMSSZ`` with mode 0600; the newest five are kept.

>>> import tempfile, pathlib
>>> env = pathlib.Path(tempfile.mkdtemp()) / ".env"
>>> _ = env.write_text("# keep me\\nA=1\\nB=2\\n")
>>> _ = update_env(env, {"B": "3", "C": "4"}, backup=False)
>>> print(env.read_text(), end="")
# keep me
A=1
B=3
C=4
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

__all__ = ["EnvFileError", "env_lock", "lock_path", "update_env"]

_KEY_LINE: Final = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)\s*=")
_KEEP_BACKUPS: Final = 5
_PLAIN_VALUE: Final = re.compile(r"^[A-Za-z0-9_.:/+=@%,-]*$")


class EnvFileError(Exception):
    """The file cannot be locked, read or replaced; the message says which and why."""


def lock_path(env: Path) -> Path:
    """The lock file every writer of ``env`` takes (the deploy script uses the same)."""
    return env.with_name(env.name + ".lock")


@contextlib.contextmanager
def env_lock(env: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold the exclusive writer lock of ``env``; waits up to ``timeout`` seconds for it."""
    path = lock_path(env)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise EnvFileError(f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EnvFileError(
                        f"{env} is being changed by another process (lock {path} held for "
                        f"{timeout:g}s); wait for the deploy or the other session runner to "
                        "finish, then try again"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _render(key: str, value: str) -> str:
    """The value as python-dotenv reads it back unchanged: plain, or in single quotes (no
    escapes there). ``$`` is refused: python-dotenv expands ``${...}`` even in quotes."""
    if _PLAIN_VALUE.match(value):
        return value
    if any(c in value for c in "'$\n\r"):
        raise EnvFileError(
            f"{key}: a value with a single quote, a $ or a line break cannot be written "
            "safely; nothing was changed"
        )
    return f"'{value}'"


def _rewrite(text: str, values: Mapping[str, str]) -> str:
    lines = text.splitlines()
    pending = dict(values)
    out: list[str] = []
    for line in lines:
        match = _KEY_LINE.match(line)
        if match and match.group(2) in values:
            prefix, key = match.groups()
            if key not in pending:
                continue  # a duplicate of a key already rewritten: dotenv takes the last one
            out.append(f"{prefix}{key}={_render(key, pending.pop(key))}")
        else:
            out.append(line)
    out.extend(f"{key}={_render(key, value)}" for key, value in pending.items())
    return "\n".join(out) + "\n"


def update_env(
    env: Path, values: Mapping[str, str], *, backup: bool = True, lock_timeout: float = 30.0
) -> Path | None:
    """Set ``values`` in ``env`` under the writer lock, atomically; returns the backup's path.

    The file is replaced by a temporary file in the same directory (written, fsynced, renamed),
    and the directory is fsynced, so a crash leaves either the old file or the new one.
    """
    env = env.resolve()  # a symlinked .env (shared across releases) is updated in place
    with env_lock(env, lock_timeout):
        try:
            saved = _replace(env, values, backup)
        except OSError as exc:
            raise EnvFileError(
                f"cannot update {env}: {exc.strerror or exc}; it is unchanged"
            ) from None
        _prune_backups(env)
        return saved


def _replace(env: Path, values: Mapping[str, str], backup: bool) -> Path | None:
    current = env.read_text(encoding="utf-8") if env.exists() else ""
    info = env.stat() if env.exists() else None
    rendered = _rewrite(current, values)
    saved: Path | None = None
    if backup and info is not None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        saved = env.with_name(f"{env.name}.bak-{stamp}")
        _copy_private(env, saved)
    mode = stat.S_IMODE(info.st_mode) if info is not None else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{env.name}.", suffix=".tmp", dir=env.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(rendered)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if info is not None:
                _keep_owner(handle.fileno(), env, info)
            os.fsync(handle.fileno())
        os.replace(tmp, env)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(env.parent)
    return saved


def _keep_owner(fd: int, env: Path, info: os.stat_result) -> None:
    try:
        os.fchown(fd, info.st_uid, info.st_gid)
    except PermissionError:
        # Only root may give a file away: written by another user, the service's user may no
        # longer read it. Refuse rather than break the running service.
        raise EnvFileError(
            f"{env} belongs to uid {info.st_uid}, and only root may keep that owner; run this "
            f"as that user (sudo -u) or as root; it is unchanged"
        ) from None


def _prune_backups(env: Path) -> None:
    """Keep the newest ``_KEEP_BACKUPS`` backups: each holds a (revoked) secret."""
    backups = sorted(env.parent.glob(f"{env.name}.bak-*"))
    for old in backups[:-_KEEP_BACKUPS]:
        with contextlib.suppress(OSError):
            old.unlink()


def _copy_private(src: Path, dst: Path) -> None:
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # two updates within one second: keep the older backup
        return
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            dst.unlink()  # no partial backup left behind
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
