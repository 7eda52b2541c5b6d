"""Secret masking and the log formats of ``opskit.logs``."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Literal

import pytest

from opskit.logs import SecretMasker, mask_secret, setup_logging
from tgstream.config import load_settings

SECRET = "sk-live-0123456789abcdef"
MASKED = "***cdef"
Format = Literal["text", "json"]


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("1234567890abcdef", "***cdef"),
        ("123456789012", "***9012"),
        ("12345678901", "***"),
        ("short", "***"),
        ("", "***"),
    ],
)
def test_mask_secret(value: str, masked: str) -> None:
    assert mask_secret(value) == masked


def test_masker_masks_every_secret_whatever_its_length() -> None:
    masker = SecretMasker()

    masker.add(None, "", "k3y", "abcde", "abcdef")

    assert masker.mask("key=k3y hash=abcde token=abcdef") == "key=*** hash=*** token=***"
    assert masker.mask("nothing secret") == "nothing secret"  # empty values mask nothing


def test_a_short_configured_secret_never_reaches_the_log() -> None:
    """Through the settings and the real handler: a 5-character stream key and API_HASH."""
    stream = io.StringIO()
    handler = setup_logging("INFO", stream=stream)
    try:
        load_settings(
            None,
            OUTPUT="rtmp",
            RTMP_URL="rtmp://host/app/Zq9x4",
            ALERT_BOT_TOKEN="t0k",  # noqa: S106 - a test value
            ALERT_CHAT_ID=1,
        )
        logging.getLogger("tgstream.test").info("publishing to rtmp://host/app/Zq9x4 with t0k")
    finally:
        logging.getLogger().removeHandler(handler)
    logged = stream.getvalue()
    assert "Zq9x4" not in logged and "t0k" not in logged
    assert "rtmp://host/app/***" in logged


def test_masker_replaces_every_occurrence_of_every_secret() -> None:
    masker = SecretMasker()
    masker.add("first-secret-1111", "second-secret-2222")

    masked = masker.mask("a=first-secret-1111 b=second-secret-2222 c=first-secret-1111")

    assert masked == "a=***1111 b=***2222 c=***1111"


def test_masker_replaces_the_longest_secret_first() -> None:
    masker = SecretMasker()
    masker.add("abcdef123456", "abcdef123456-and-more-XYZW")  # one contains the other

    masked = masker.mask("long=abcdef123456-and-more-XYZW short=abcdef123456")

    assert masked == "long=***XYZW short=***3456"


# ---- setup_logging ------------------------------------------------------------------------


@pytest.fixture
def restore_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def masker() -> SecretMasker:
    masker = SecretMasker()
    masker.add(SECRET)
    return masker


def authenticate() -> None:
    raise RuntimeError(f"auth failed for {SECRET}")


def capture(masker: SecretMasker, fmt: Format = "text", level: str = "INFO") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(level, fmt, stream=stream, masker=masker)
    return stream


@pytest.mark.usefixtures("restore_root")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_in_message_args_and_traceback(
    fmt: Format, masker: SecretMasker
) -> None:
    stream = capture(masker, fmt)
    log = logging.getLogger("tests.logs.mask")

    log.info(f"connecting with {SECRET}")
    log.warning("token %s refused (%d)", SECRET, 401)
    try:
        authenticate()
    except RuntimeError:
        log.exception("login failed")

    output = stream.getvalue()
    assert SECRET not in output
    assert output.count(MASKED) == 3
    assert "token ***cdef refused (401)" in output
    assert "RuntimeError: auth failed for ***cdef" in output


@pytest.mark.usefixtures("restore_root")
def test_json_lines_have_ts_level_component_message(masker: SecretMasker) -> None:
    stream = capture(masker, "json", level="debug")
    logging.getLogger("tgstream.engine").debug("now playing: %s", "Ünïcode title")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("tgstream.output").error("failed", exc_info=True)

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())

    assert set(first) == {"ts", "level", "component", "message"}
    assert (first["level"], first["component"], first["message"]) == (
        "DEBUG",
        "tgstream.engine",
        "now playing: Ünïcode title",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert (second["level"], second["component"], second["message"]) == (
        "ERROR",
        "tgstream.output",
        "failed",
    )
    assert second["exc"].startswith("Traceback")
    assert "ZeroDivisionError" in second["exc"]


@pytest.mark.usefixtures("restore_root")
def test_text_lines_carry_utc_timestamp_level_and_logger(masker: SecretMasker) -> None:
    stream = capture(masker, "text")

    logging.getLogger("tgstream.catalog").warning("line %d skipped", 7)
    logging.getLogger("tgstream.catalog").debug("below the level")

    (line,) = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING tgstream\.catalog: line 7 skipped", line
    )


def test_setup_logging_is_idempotent(restore_root: logging.Logger, masker: SecretMasker) -> None:
    first = capture(masker)
    second = capture(masker)

    logging.getLogger("tests.logs.once").info("hello")

    assert first.getvalue() == ""
    assert second.getvalue().count("hello") == 1
    assert sum(1 for h in restore_root.handlers if getattr(h, "_opskit", False)) == 1
