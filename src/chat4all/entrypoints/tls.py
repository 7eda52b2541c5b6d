"""TLS for both APIs, from one certificate and key (``CHAT4ALL_TLS_CERT_FILE``/``_KEY_FILE``).

REST speaks TLS 1.3 only. gRPC's Python server cannot yet bound the TLS version (grpc/grpc
#43080 is open): it negotiates 1.3 with every current client and accepts 1.2 from older ones.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from chat4all.errors import InvalidRequest

__all__ = ["Tls"]


class Tls:
    """The loaded certificate: a bad file is refused at start, naming the setting."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        try:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.minimum_version = ssl.TLSVersion.TLSv1_3
            self._context.load_cert_chain(cert_file, key_file)
            self._pair = (key_file.read_bytes(), cert_file.read_bytes())
        except (ssl.SSLError, OSError) as exc:
            raise InvalidRequest(
                f"CHAT4ALL_TLS_CERT_FILE={cert_file} / CHAT4ALL_TLS_KEY_FILE={key_file}: cannot "
                f"load them ({exc}); give a PEM certificate chain and its unencrypted key",
                field="CHAT4ALL_TLS_CERT_FILE",
            ) from None

    def rest(self, *_: object) -> ssl.SSLContext:
        """For uvicorn's ``ssl_context_factory``: TLS 1.3 only."""
        return self._context

    def grpc(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([self._pair])
