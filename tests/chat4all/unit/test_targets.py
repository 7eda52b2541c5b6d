"""The rules on a webhook's URL: checked at subscription, and again (after DNS) at delivery."""

from __future__ import annotations

import pytest

from chat4all.errors import InvalidRequest
from chat4all.service_layer.targets import TargetPolicy, UnsafeTarget


def resolving_to(*addresses: str) -> TargetPolicy:
    async def resolver(_host: str, _port: int) -> list[str]:
        return list(addresses)

    return TargetPolicy(resolver=resolver)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1", "not a valid URL"),
        ("ftp://files.example.com/x", "http:// or https://"),
        ("https:///path", "no host"),
        ("https://user:secret@hooks.example.com/x", "credentials"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://bad_host!/hook", "not a valid host name"),
    ],
)
def test_a_bad_url_is_refused_naming_the_field(url: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        TargetPolicy().check(url)
    assert refused.value.field == "url"
    assert says in str(refused.value)
    assert "secret" not in str(refused.value)  # credentials are not echoed


def test_public_urls_pass_and_private_ones_pass_when_allowed() -> None:
    assert TargetPolicy().check("https://hooks.example.com:8443/x?y=1").host == "hooks.example.com"
    assert TargetPolicy().check("http://93.184.216.34/hook").port is None
    allowed = TargetPolicy(allow_private=True)
    assert allowed.check("http://127.0.0.1:9/hook").port == 9
    with pytest.raises(InvalidRequest, match="credentials"):
        allowed.check("http://u:p@127.0.0.1/hook")  # never, even on premises


async def test_at_delivery_the_name_must_resolve_to_public_addresses_only() -> None:
    public = resolving_to("93.184.216.34")
    target = await public.checked("https://hooks.example.com:8443/x")
    # connect to the address checked; the name stays in Host and in TLS's server name
    assert str(target.connect_url) == "https://93.184.216.34:8443/x"
    assert target.headers == {"Host": "hooks.example.com:8443"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}
    plain = await TargetPolicy(allow_private=True).checked("http://127.0.0.1:9/hook")
    assert (str(plain.connect_url), plain.headers, plain.extensions) == (
        "http://127.0.0.1:9/hook",
        {},
        {},
    )
    rebound = resolving_to("93.184.216.34", "10.0.0.7")
    with pytest.raises(UnsafeTarget, match=r"resolves to 10\.0\.0\.7, a private address"):
        await rebound.checked("https://hooks.example.com/x")
    nowhere = resolving_to()
    with pytest.raises(UnsafeTarget, match="cannot resolve"):
        await nowhere.checked("https://hooks.example.com/x")
    with pytest.raises(UnsafeTarget, match="not a valid URL"):
        await public.checked("http://[::1")


async def test_a_name_that_does_not_resolve_is_a_failure_not_an_exception_escaping() -> None:
    async def failing(host: str, _port: int) -> list[str]:
        raise OSError(f"no such host {host}")

    with pytest.raises(UnsafeTarget, match=r"cannot resolve gone\.example: no such host"):
        await TargetPolicy(resolver=failing).checked("https://gone.example/x")
