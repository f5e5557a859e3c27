"""Subscriber URLs: public addresses, or the networks FALBRIDGE_NOTIFY_ALLOWED_NETWORKS
lists; its own rule, apart from downloads'."""

from __future__ import annotations

import ipaddress
import threading

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falbridge.config import Config, ConfigError
from falbridge.worker.notify import address
from falbridge.worker.notify.address import (
    MAX_URL_LENGTH,
    URL_SHAPE,
    AddressRefused,
    check,
    refusal,
    well_formed,
)

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    "url,why",
    [
        ("ftp://example.com/x", "only http and https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://127.0.0.1:8000/x", "non-public"),
        ("http://10.1.2.3/x", "non-public"),
        ("http://169.254.169.254/latest/meta-data/", "non-public"),
        ("http://[::ffff:127.0.0.1]/x", "non-public"),
        ("http://" + "a" * 2100 + ".example/", "longer than"),
    ],
)
def test_refused_without_an_allowed_network(url, why):
    with pytest.raises(AddressRefused, match=why):
        check(url, ())


def test_an_allowed_network_lets_its_addresses_through_and_no_others():
    assert str(check("http://127.0.0.1:9/x", LOOPBACK)[1]) == "127.0.0.1"
    assert check("http://[::ffff:127.0.0.1]:9/x", LOOPBACK)[1] == ipaddress.ip_address("::ffff:127.0.0.1")
    with pytest.raises(AddressRefused, match="non-public"):
        check("http://10.1.2.3/x", LOOPBACK)


def test_public_addresses_need_no_allowance():
    assert str(check("https://93.184.215.14/hook", ())[1]) == "93.184.215.14"


def test_the_setting_is_a_list_of_cidrs():
    cfg = Config.from_environ({"FALBRIDGE_NOTIFY_ALLOWED_NETWORKS": " 10.0.0.0/8, 127.0.0.0/8 "})
    assert [str(n) for n in cfg.notify.networks()] == ["10.0.0.0/8", "127.0.0.0/8"]
    with pytest.raises(ConfigError, match="FALBRIDGE_NOTIFY_ALLOWED_NETWORKS: network 2 is not a CIDR"):
        Config.from_environ({"FALBRIDGE_NOTIFY_ALLOWED_NETWORKS": "10.0.0.0/8,nope"})


@pytest.mark.parametrize(
    "url,ok",
    [
        ("https://hooks.example.com:8443/in/falbridge?token=abc%20d", True),
        ("http://127.0.0.1:65535/hooks", True),
        ("http://127.0.0.1:65536/hooks", False),
        ("http://[::1]/hooks", False),
        ("http://a b/", False),
        ("http://example.com/\n", False),
        # Long runs that fail late are refused at once (no backtracking blow-up).
        ("http://" + "a" * 2000 + "!", False),
        ("http://" + "a." * 900 + "!", False),
        # httpx reads four dot-separated digit runs as an IPv4 address, and refuses a bad one.
        ("HTTP://00.0.0.0", False),
        ("http://256.1.1.1/x", False),
        ("http://01.2.3.4:80", False),
        ("http://0.0.0.0", True),
        ("http://255.255.255.255/x", True),
        ("http://1-2.3.4", True),
        ("http://1.2.3", True),
        ("http://1.2.3.4.", True),
    ],
)
def test_the_shape_the_api_takes(url, ok):
    assert well_formed(url) is ok


_DIGIT_HOSTS = st.lists(st.from_regex(r"[0-9]{1,4}", fullmatch=True), min_size=1, max_size=5).map(".".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.from_regex(URL_SHAPE, fullmatch=True), _DIGIT_HOSTS.map("http://{}/x".format)))
def test_every_url_of_the_shape_is_one_httpx_can_call(url):
    """The schema promises the shape; the server must then be able to parse the URL
    (schemathesis once found `HTTP://00.0.0.0` accepted by the shape and refused by httpx)."""
    if len(url) <= MAX_URL_LENGTH and well_formed(url):
        httpx.URL(url)


def test_a_host_the_resolver_does_not_answer_for_in_time_is_taken_and_checked_at_connection():
    # schemathesis found a submit held past its 10 s client timeout: a made-up host name
    # and a resolver that waits out its own timeouts (no network). Here every lookup
    # thread is held busy, so the lookup cannot finish in time: the name is taken at the
    # API, while check() (what each connection runs) still refuses it.
    assert refusal("http://localhost:8080/hook", []) is not None
    release = threading.Event()
    busy = [address._lookups.submit(release.wait) for _ in range(address._lookups._max_workers)]
    try:
        assert refusal("http://localhost:8080/hook", [], resolve_within_s=0.2) is None
    finally:
        release.set()
        for held in busy:
            held.result()
    with pytest.raises(AddressRefused):
        check("http://localhost:8080/hook", [])


def test_a_literal_address_is_judged_without_waiting_on_dns():
    assert "non-public" in (refusal("http://10.1.2.3/hook", [], resolve_within_s=1) or "")
