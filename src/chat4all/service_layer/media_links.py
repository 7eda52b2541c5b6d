"""Signed, expiring links to uploaded media, for channels that cannot take a file that large.

A link is ``<public base URL>/v1/public/media/<token>``; the token carries the tenant, the media
id and the expiry, with an HMAC-SHA256 of them under the hub's link secret. The route that serves
it is public by design: it checks only the signature (compared in constant time) and the expiry,
so anyone holding the link can fetch the file until it expires, and nobody can forge or extend
one without the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr

from chat4all.errors import InvalidRequest

__all__ = ["MediaLinks", "SignedMedia", "LINK_PATH"]

LINK_PATH: Final = "/v1/public/media/"
_MAX_TOKEN: Final = 2048


@dataclass(frozen=True, slots=True)
class SignedMedia:
    """What a valid link names."""

    tenant: str
    media_id: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MediaLinks:
    """Signs and checks media links; ``base_url`` empty: no link can be made (the reason says
    which setting to set)."""

    def __init__(self, secret: SecretStr | None, base_url: str = "", ttl: float = 3600.0) -> None:
        if secret is not None and len(secret.get_secret_value()) < 16:
            raise ValueError("the media link secret must be at least 16 characters")
        self._key = secret.get_secret_value().encode() if secret is not None else b""
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    @property
    def refusal(self) -> str | None:
        """Why a link cannot be sent, or ``None`` when it can."""
        if not self._key:
            return (
                "sending a link needs a secret to sign it with "
                "(set CHAT4ALL_MEDIA_LINK_SECRET and CHAT4ALL_MEDIA_PUBLIC_URL), "
                "or choose the 422 policy"
            )
        if not self.base_url:
            return (
                "sending a link needs a public base URL for media "
                "(set CHAT4ALL_MEDIA_PUBLIC_URL), or choose the 422 policy"
            )
        return None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def token(self, tenant: str, media_id: str, now: float) -> str:
        expires = int(now + self.ttl)
        payload = _b64(json.dumps([tenant, media_id, expires], separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def url(self, tenant: str, media_id: str, now: float) -> str:
        """The link; :class:`InvalidRequest` when no public base URL is configured."""
        reason = self.refusal
        if reason is not None:
            raise InvalidRequest(reason, field="oversize")
        return self.base_url + LINK_PATH + self.token(tenant, media_id, now)

    def verify(self, token: str, now: float) -> SignedMedia | None:
        """What ``token`` names when its signature is ours and it has not expired; else
        ``None`` (the caller answers the same way whatever was wrong)."""
        if not self._key or len(token) > _MAX_TOKEN or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        try:
            expected = self._sign(payload)
        except UnicodeEncodeError:
            return None
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return None
        try:
            tenant, media_id, expires = json.loads(_unb64(payload))
        except (ValueError, binascii.Error, TypeError):
            return None
        if not isinstance(expires, int) or expires <= now:
            return None
        return SignedMedia(str(tenant), str(media_id), expires)
