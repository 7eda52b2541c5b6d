"""Signed media links: what a link names comes back only with our signature and before it
expires; anything altered, forged or late is refused the same way."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from chat4all.config import load_settings
from chat4all.errors import InvalidRequest
from chat4all.registry import Registry
from chat4all.service_layer.media_links import LINK_PATH, MediaLinks, SignedMedia

SECRET = SecretStr("s3cret-of-at-least-16")


def links(base: str = "https://media.example.org/") -> MediaLinks:
    return MediaLinks(SECRET, base, ttl=600)


def test_a_link_names_its_media_until_it_expires() -> None:
    url = links().url("tenant/odd name", "md_1", now=1000.0)
    assert url.startswith("https://media.example.org" + LINK_PATH)
    token = url.rsplit("/", 1)[1]
    assert links().verify(token, now=1599.0) == SignedMedia("tenant/odd name", "md_1", 1600)
    assert links().verify(token, now=1600.0) is None


def test_a_token_altered_or_signed_with_another_secret_is_refused() -> None:
    token = links().token("t1", "md_1", now=1000.0)
    payload, signature = token.split(".")
    other = MediaLinks(SecretStr("another-secret-16chars"), "https://x", ttl=600)
    forged = links().token("t2", "md_1", now=1000.0).split(".")[0]
    for bad in (
        other.token("t1", "md_1", now=1000.0),
        f"{forged}.{signature}",
        f"{payload}.{signature[:-2]}AA",
        payload,
        "",
        "é.é",
        token + ".x",
        "x" * 5000,
    ):
        assert links().verify(bad, now=1001.0) is None, bad


def test_without_a_public_url_a_link_is_refused_with_the_setting_to_set() -> None:
    no_base = MediaLinks(SECRET, "")
    assert no_base.refusal is not None and "CHAT4ALL_MEDIA_PUBLIC_URL" in no_base.refusal
    with pytest.raises(InvalidRequest, match="CHAT4ALL_MEDIA_PUBLIC_URL"):
        no_base.url("t1", "md_1", now=0.0)


def test_a_short_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="at least 16") as caught:
        MediaLinks(SecretStr("short-one"), "https://x")
    assert "short-one" not in str(caught.value)


def test_a_short_secret_in_the_settings_names_the_key_not_the_value() -> None:
    with pytest.raises(InvalidRequest) as caught:
        load_settings(None, Registry([]), MEDIA_LINK_SECRET="short-one")  # noqa: S106
    assert "MEDIA_LINK_SECRET" in str(caught.value)
    assert "short-one" not in str(caught.value)
