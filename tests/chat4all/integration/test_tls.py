"""TLS on both APIs from one certificate: REST refuses anything older than TLS 1.3; bad
certificate settings are refused at start, naming the setting."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chat4all.bootstrap import Hub
from chat4all.config import load_settings
from chat4all.errors import InvalidRequest
from tests.chat4all.conftest import hub_running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def hub(tmp_path: Path, certificate: tuple[Path, Path]) -> AsyncIterator[Hub]:
    cert, key = certificate
    async with hub_running(tmp_path, TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key)) as running:
        yield running


async def test_rest_speaks_tls_1_3_only(hub: Hub, certificate: tuple[Path, Path]) -> None:
    assert hub.url.startswith("https://")
    modern = ssl.create_default_context(cafile=str(certificate[0]))
    async with httpx.AsyncClient(base_url=hub.url, verify=modern) as client:
        answer = await client.get("/health")
        assert answer.status_code == 200
        stream = answer.extensions["network_stream"]
        assert stream.get_extra_info("ssl_object").version() == "TLSv1.3"
    old = ssl.create_default_context(cafile=str(certificate[0]))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    async with httpx.AsyncClient(base_url=hub.url, verify=old) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/health")
    async with httpx.AsyncClient(base_url=hub.url.replace("https", "http")) as client:
        with pytest.raises(httpx.HTTPError):  # no plain text on the TLS port
            await client.get("/health")


async def test_grpc_serves_tls_with_the_same_certificate(
    hub: Hub, certificate: tuple[Path, Path]
) -> None:
    credentials = grpc.ssl_channel_credentials(certificate[0].read_bytes())
    async with grpc.aio.secure_channel(hub.grpc_target, credentials) as channel:
        status = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="")
        )
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    async with grpc.aio.insecure_channel(hub.grpc_target) as plain:
        with pytest.raises(grpc.aio.AioRpcError):
            await health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )


def test_half_or_broken_tls_settings_are_refused_with_the_setting_named(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with pytest.raises(InvalidRequest, match="CHAT4ALL_TLS_KEY_FILE"):
        load_settings(None, TLS_CERT_FILE=str(cert))
    with pytest.raises(InvalidRequest, match="CHAT4ALL_TLS_CERT_FILE"):
        load_settings(None, TLS_CERT_FILE=str(tmp_path / "missing.pem"), TLS_KEY_FILE=str(key))
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate\n")
    env = {
        "PATH": os.environ["PATH"],
        "CHAT4ALL_DATA_DIR": str(tmp_path / "data"),
        "CHAT4ALL_PORT": "0",
        "CHAT4ALL_GRPC_PORT": "0",
        "CHAT4ALL_SIMULATOR_PORT": "0",
        "CHAT4ALL_TLS_CERT_FILE": str(broken),
        "CHAT4ALL_TLS_KEY_FILE": str(key),
    }
    served = subprocess.run(
        [sys.executable, "-m", "chat4all", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert served.returncode == 2
    assert "CHAT4ALL_TLS_CERT_FILE" in served.stderr
    assert "Traceback" not in served.stderr
