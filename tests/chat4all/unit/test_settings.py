"""CHAT4ALL_* settings as an operator writes them: bot accounts with their tenants."""

from __future__ import annotations

import pytest

from chat4all.config import load_settings
from chat4all.domain.model import Channel
from chat4all.errors import InvalidRequest, NotFound
from chat4all.service_layer.accounts import Accounts


def test_bots_are_a_bare_token_or_a_token_with_its_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CHAT4ALL_TELEGRAM_BOTS",
        '{"support": "111:aaaaaaaaaaaa", "sales": {"token": "222:bbbbbbbbbbbb", "tenant": "acme"}}',
    )
    settings = load_settings(None)
    assert settings.TELEGRAM_BOTS["support"].tenant is None
    assert settings.TELEGRAM_BOTS["sales"].tenant == "acme"
    assert sorted(settings.secrets()) == ["111:aaaaaaaaaaaa", "222:bbbbbbbbbbbb"]
    assert "bbbbbbbbbbbb" not in repr(settings)  # tokens are secrets, never printed
    assert not settings.embedded_simulator


@pytest.mark.parametrize(
    "value",
    ['{"sales": {"tokn": "x"}}', '{"sales": {"token": "x", "tenant": ""}}', "[1, 2]"],
)
def test_a_malformed_bot_entry_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CHAT4ALL_TELEGRAM_BOTS", value)
    with pytest.raises(InvalidRequest) as caught:
        load_settings(None)
    assert "CHAT4ALL_TELEGRAM_BOTS" in str(caught.value)


def test_idempotency_is_remembered_at_least_a_day() -> None:
    with pytest.raises(InvalidRequest, match="CHAT4ALL_IDEMPOTENCY_HOURS"):
        load_settings(None, IDEMPOTENCY_HOURS=12)


def test_an_account_belongs_to_one_tenant() -> None:
    accounts = Accounts({(Channel.TELEGRAM, "sales"): "acme"})
    accounts.check("acme", Channel.TELEGRAM, "sales")
    with pytest.raises(InvalidRequest) as refused:
        accounts.check("globex", Channel.TELEGRAM, "sales")
    assert refused.value.field == "account"
    with pytest.raises(InvalidRequest):
        accounts.check("acme", Channel.WHATSAPP, "sales")  # same name, other channel
    assert accounts.owner(Channel.TELEGRAM, "sales") == "acme"
    with pytest.raises(NotFound):
        accounts.owner(Channel.TELEGRAM, "nobody")
