"""Logging set-up with one secret-masking filter.

Only an entrypoint's ``main`` calls :func:`setup_logging`. Library code uses
``logging.getLogger(__name__)`` and never configures handlers.

Secrets are registered once (``SecretMasker.add``) and then replaced by ``***abcd`` (the last
four characters) in every message, argument and traceback that reaches a handler, whichever
logger emitted it.

>>> masker = SecretMasker()
>>> masker.add("1234567890abcdef")
>>> masker.mask("token=1234567890abcdef")
'token=***cdef'
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, TextIO

__all__ = [
    "JsonFormatter",
    "SecretMasker",
    "mask_secret",
    "setup_logging",
    "MASKER",
    "log_context",
]

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def mask_secret(value: str) -> str:
    """Return ``***`` plus the last four characters, or only ``***`` for short values."""
    return "***" + value[-4:] if len(value) >= 12 else "***"


class SecretMasker:
    """Holds the secret values of this process and replaces them in text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        """Register secrets, whatever their length: a short secret is still a secret (it may
        mask some noise too, which is the lesser harm). Empty values are ignored."""
        with self._lock:
            for value in values:
                if value:
                    self._secrets.add(value)

    def mask(self, text: str) -> str:
        # Longest first, so a secret that contains another is replaced whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, mask_secret(secret))
        return text


MASKER: Final = SecretMasker()
"""The process-wide masker: entrypoints register settings' secrets in it at start-up."""


_NONE: Final[Mapping[str, str]] = MappingProxyType({})
_CONTEXT: Final[contextvars.ContextVar[Mapping[str, str]]] = contextvars.ContextVar(
    "opskit_log_context", default=_NONE
)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (a request id, a trace id) to every record logged inside this block, in
    this task and the tasks it starts: JSON logs carry them as keys, text logs in brackets."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class _MaskingFilter(logging.Filter):
    """Renders message, arguments and traceback once, masked, before any formatter sees them."""

    def __init__(self, masker: SecretMasker) -> None:
        super().__init__()
        self._masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = _CONTEXT.get()
        record.msg = self._masker.mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self._masker.mask(record.stack_info)
        return True


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context: Mapping[str, str] = getattr(record, "context", {})
        if not context:
            return text
        return text + " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"


class JsonFormatter(_UtcFormatter):
    """One JSON object per line: ``ts``, ``level``, ``component``, ``message`` (+ ``exc``), and
    the fields of :func:`log_context`."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            **getattr(record, "context", {}),
            "ts": self.formatTime(record),
            "level": record.levelname,
            "component": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
    masker: SecretMasker = MASKER,
) -> logging.Handler:
    """Install one stderr handler on the root logger, with the masking filter. Idempotent."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_opskit", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._opskit = True  # type: ignore[attr-defined]
    handler.addFilter(_MaskingFilter(masker))
    handler.setFormatter(JsonFormatter() if fmt == "json" else _UtcFormatter(_TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
