"""verify(), fal's signature check, called directly: each way a callback is refused (with
its code and reason, and before any key is fetched when the headers alone condemn it), and
what is accepted at the edges: a timestamp at the tolerance, the longest plausible one, a
key listed second in the JWKS. The keys come over real HTTP from a local JWKS; `now=` pins
the time, so nothing here depends on the clock."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest

from falbridge.sandbox.signing import SigningKey, sign
from falbridge.webhooks.receive.jwks import JwksCache
from falbridge.webhooks.receive.verify import SIGNATURE_HEADERS, VerificationError, VerifiedHeaders, verify
from tests.plugins.sandbox import WebhookSink

FAL = SigningKey.generate()  # the key fal signs with
ALSO_FAL = SigningKey.generate()  # another key fal publishes, listed first (as during a rotation)
FORGER = SigningKey.generate()  # a key fal never published
USER = "sandbox-user"
NOW = 1_700_000_000
BODY = json.dumps({"request_id": "req-v", "status": "OK", "payload": {"n": 1}}).encode()
DOES_NOT_VERIFY = ("bad_signature", "signature does not verify with any fal key")


def signed(
    body: bytes = BODY,
    *,
    request_id: str = "req-v",
    user_id: str = USER,
    timestamp: str = str(NOW),
    key: SigningKey = FAL,
) -> dict[str, str]:
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": sign(key, request_id, user_id, timestamp, body),
    }


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    sink = WebhookSink()
    try:
        document = json.dumps({"keys": [ALSO_FAL.jwk(), FAL.jwk()]}).encode()
        yield sink.serve_file("/.well-known/jwks.json", document, "application/json")
    finally:
        sink.close()


@pytest.fixture
def cache(jwks_url) -> JwksCache:
    return JwksCache(jwks_url)


def refusal(cache: JwksCache, headers: dict[str, str], body: bytes = BODY, **options) -> tuple[str, str]:
    with pytest.raises(VerificationError) as caught:
        verify(headers, body, cache, **{"now": NOW, **options})
    return caught.value.code, caught.value.reason


def test_a_genuine_callback_is_verified_with_either_published_key(cache):
    verified = verify(headers=signed(), body=BODY, jwks=cache, now=NOW)  # arguments by name
    assert verified == VerifiedHeaders(request_id="req-v", user_id=USER, timestamp=NOW)
    assert verify(signed(key=ALSO_FAL), BODY, cache, now=NOW) == verified
    assert cache.fetches == 1  # the key listed second verified: no refetch was needed
    with pytest.raises(dataclasses.FrozenInstanceError):
        verified.user_id = "someone-else"  # type: ignore[misc]  # what was verified stays so


def test_header_values_are_taken_without_surrounding_whitespace(cache):
    headers = {name: f" {value}\t" for name, value in signed().items()}
    assert verify(headers, BODY, cache, now=NOW) == VerifiedHeaders("req-v", USER, NOW)


@pytest.mark.parametrize("blank", [None, "", "  "], ids=["absent", "empty", "blank"])
@pytest.mark.parametrize("name", SIGNATURE_HEADERS)
def test_each_missing_signature_header_is_refused_by_name_before_any_key_is_fetched(cache, name, blank):
    headers = signed()
    if blank is None:
        del headers[name]
    else:
        headers[name] = blank
    assert refusal(cache, headers) == ("missing_headers", f"missing header(s): {name}")
    assert cache.fetches == 0


def test_every_missing_header_is_named():
    headers = {"X-Fal-Webhook-Request-Id": "req-v", "X-Fal-Webhook-User-Id": USER}
    missing = "X-Fal-Webhook-Timestamp, X-Fal-Webhook-Signature"
    assert refusal(JwksCache("http://127.0.0.1:9/unused"), headers) == (
        "missing_headers",
        f"missing header(s): {missing}",
    )


# "١٧٠٠٠٠٠٠٠٠" (Arabic-Indic digits) is 1700000000 to int(): only ASCII digits are a timestamp.
@pytest.mark.parametrize(
    "timestamp", ["12e5", "-1700000000", "+1700000000", "1700000000.0", "١٧٠٠٠٠٠٠٠٠", "¹⁷"]
)
def test_a_timestamp_of_anything_but_ascii_digits_is_refused(cache, timestamp):
    assert refusal(cache, signed(timestamp=timestamp)) == ("bad_timestamp", "timestamp is not an integer")
    assert cache.fetches == 0


def test_a_twelve_digit_timestamp_is_judged_by_its_skew_a_longer_one_refused_outright(cache):
    latest = 10**12 - 1  # 12 digits: the year 33658
    assert verify(signed(timestamp=str(latest)), BODY, cache, now=latest).timestamp == latest
    implausible = ("stale_timestamp", "timestamp outside tolerance (not a plausible Unix time)")
    assert refusal(cache, signed(timestamp=str(10**12)), now=10**12) == implausible
    # Thousands of digits are refused the same way, not a 500 from int() or float overflow.
    assert refusal(cache, signed(timestamp="9" * 5000)) == implausible


@pytest.mark.parametrize("skew", [300, -300])
def test_a_timestamp_exactly_at_the_default_tolerance_is_accepted(cache, skew):
    assert verify(signed(), BODY, cache, now=NOW + skew).timestamp == NOW


@pytest.mark.parametrize("skew", [301, -301])
def test_a_timestamp_one_second_past_the_default_tolerance_is_refused(cache, skew):
    reason = f"timestamp outside tolerance ({skew} s off, limit 300 s)"
    assert refusal(cache, signed(), now=NOW + skew) == ("stale_timestamp", reason)
    assert cache.fetches == 0


def test_the_tolerance_is_configurable():
    cache = JwksCache("http://127.0.0.1:9/unused")
    reason = "timestamp outside tolerance (11 s off, limit 10 s)"
    assert refusal(cache, signed(), now=NOW + 11, tolerance_s=10) == ("stale_timestamp", reason)


def test_without_now_the_current_time_is_used(cache):
    timestamp = int(time.time())
    assert verify(signed(timestamp=str(timestamp)), BODY, cache).timestamp == timestamp
    with pytest.raises(VerificationError, match="outside tolerance"):
        verify(signed(), BODY, cache)  # NOW is in 2023


@pytest.mark.parametrize(
    "signature, reason",
    [
        ("zz" * 64, "signature is not hex"),
        ("abc", "signature is not hex"),
        ("ab" * 63, "signature has the wrong length"),
        ("ab" * 65, "signature has the wrong length"),
    ],
    ids=["not hex", "odd length", "63 bytes", "65 bytes"],
)
def test_a_malformed_signature_is_refused_before_any_key_is_fetched(cache, signature, reason):
    headers = {**signed(), "X-Fal-Webhook-Signature": signature}
    assert refusal(cache, headers) == ("bad_signature", reason)
    assert cache.fetches == 0


@pytest.mark.parametrize(
    "tamper",
    [
        lambda: (signed(key=FORGER), BODY),
        lambda: (signed(), BODY.replace(b'"n": 1', b'"n": 2')),
        lambda: ({**signed(), "X-Fal-Webhook-Request-Id": "req-w"}, BODY),
        lambda: ({**signed(), "X-Fal-Webhook-User-Id": "someone-else"}, BODY),
        lambda: ({**signed(), "X-Fal-Webhook-Timestamp": str(NOW - 1)}, BODY),
        lambda: ({**signed(), "X-Fal-Webhook-Request-Id": "req-\ud800"}, BODY),
    ],
    ids=["another key", "body", "request id", "user id", "timestamp", "a lone surrogate"],
)
def test_a_signature_no_published_key_verifies_is_refused(cache, tamper):
    headers, body = tamper()
    assert refusal(cache, headers, body) == DOES_NOT_VERIFY
    assert cache.fetches == 1  # the keys are fresh: no refetch for a rotation


@pytest.mark.parametrize("foreign", ["aaa-user", "zzz-user"], ids=["sorting before ours", "after ours"])
def test_a_genuine_callback_for_another_fal_user_is_refused_when_ours_is_pinned(cache, foreign):
    assert verify(signed(), BODY, cache, expected_user_id=USER, now=NOW).user_id == USER
    assert refusal(cache, signed(user_id=foreign), expected_user_id=USER) == (
        "foreign_user",
        "webhook user id is not ours",
    )
    # The signature is judged first: a forgery naming another user is a bad signature.
    assert refusal(cache, signed(user_id=foreign, key=FORGER), expected_user_id=USER) == DOES_NOT_VERIFY
    assert verify(signed(user_id=foreign), BODY, cache, now=NOW).user_id == foreign  # not pinned
