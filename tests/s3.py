"""An S3-compatible server for the tests: moto's server mode (``moto[server]``, the dev extra) in
a process of its own on a free loopback port, so what the hub sends crosses a real HTTP
connection and the test process's memory is the hub's alone. Each test gets a bucket of its
own (:func:`fresh_bucket`)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from tests.services import ServiceUnavailable, answers, free_port

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION", "moto_server", "client", "fresh_bucket"]

ACCESS_KEY_ID: Final = "AKIATESTCHAT4ALL"
SECRET_ACCESS_KEY: Final = "s3-secret-for-the-tests-0123456789"
REGION: Final = "us-east-1"
START_TIMEOUT: Final = 30.0


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server, started for the context; its URL."""
    try:
        import moto.server  # noqa: F401, PLC0415 - only to say what is missing
    except ImportError:
        raise ServiceUnavailable(
            "moto's S3 server: moto[server] is not installed; pip install -e '.[dev]'"
        ) from None
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # a line per request: never read, so never a full pipe
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers("127.0.0.1", port, timeout=0.2):
            if server.poll() is not None:
                raise ServiceUnavailable(f"moto's S3 server exited {server.returncode} at start")
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"moto's S3 server did not listen in {START_TIMEOUT} s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def client(endpoint: str) -> S3Client:
    """A client of the server at ``endpoint`` (the tests' own look at the bucket)."""
    import boto3  # noqa: PLC0415 - the s3 extra

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def fresh_bucket(s3: S3Client) -> str:
    """A new empty bucket's name."""
    name = f"media-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name)
    return name
