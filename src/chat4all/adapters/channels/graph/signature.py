"""``X-Hub-Signature-256``: Meta signs every webhook POST with HMAC-SHA256 of the raw body
under the app secret, as ``sha256=<hex>``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from chat4all.errors import AuthError
from chat4all.ports import WebhookRequest

__all__ = ["SIGNATURE_HEADER", "sign", "verify", "check_signature"]

SIGNATURE_HEADER: Final = "x-hub-signature-256"
_PREFIX: Final = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header's value for ``body`` under ``secret`` (what Meta sends; the simulators use
    it)."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``body``'s signature under ``secret`` (constant time; no secret
    configured verifies nothing)."""
    if not secret or not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(header.lower().encode(), sign(secret, body).encode())


def check_signature(secret: str, request: WebhookRequest) -> None:
    """:class:`AuthError` unless ``request`` carries its body's signature under ``secret``."""
    header = request.headers.get(SIGNATURE_HEADER)
    if not secret:
        raise AuthError(
            "no app secret is configured for this account, so no webhook can be verified; "
            "set its app_secret"
        )
    if header is None:
        raise AuthError(f"unsigned webhook: no {SIGNATURE_HEADER} header")
    if not verify(secret, request.body, header):
        raise AuthError(f"bad {SIGNATURE_HEADER}: not this body's HMAC-SHA256 under the app secret")
