"""Rotated webhook secrets: any one of several verifies, through both adapters; a secret of
the wrong type is refused when the receiver is made, never with a 500 on each delivery."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import aiohttp
import msgspec
import pytest

from getbill_async.webhooks import (
    SIGNATURE_HEADER,
    FollowupCreated,
    WebhookEvent,
    WebhookReceiver,
    verify_signature,
    webhook_handler,
)

from .test_webhooks_parity import ADAPTERS, Adapter, served

CURRENT = "whsec_new_2026"
PREVIOUS = "whsec_old_2025"
FOLLOWUP = {"id": "f1", "debt_id": "d1", "status": "delivered", "type": "call"}
BODY = msgspec.json.encode({"type": "followup.created", "data": FOLLOWUP})


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(
    "secrets", [[CURRENT, PREVIOUS], (CURRENT, PREVIOUS)], ids=["list", "tuple"]
)
async def test_during_a_rotation_the_old_and_the_new_secret_both_verify(
    adapter: Adapter, secrets: Any
) -> None:
    seen: list[WebhookEvent] = []
    receiver = WebhookReceiver(secrets, seen.append, acknowledge="after")
    async with served(adapter, receiver) as url, aiohttp.ClientSession() as http:
        statuses = []
        for secret in (CURRENT, PREVIOUS, "whsec_someone_else"):
            headers = {SIGNATURE_HEADER: sign(BODY, secret)}
            async with http.post(url, data=BODY, headers=headers) as resp:
                statuses.append(resp.status)
    assert statuses == [204, 204, 401]
    assert [type(e) for e in seen] == [FollowupCreated, FollowupCreated]
    assert (receiver.received, receiver.rejected, receiver.failed) == (2, 1, 0)
    # The first secret is the current one: the count tells when the old one can go.
    assert receiver.previous_secret == 1
    assert CURRENT not in repr(receiver) and PREVIOUS not in repr(receiver)


def test_verify_signature_takes_one_secret_or_several() -> None:
    good = sign(BODY, PREVIOUS)
    assert verify_signature(BODY, good, [CURRENT, PREVIOUS])
    assert verify_signature(BODY, good, (PREVIOUS,))
    assert verify_signature(BODY, good, PREVIOUS)
    assert not verify_signature(BODY, good, [CURRENT])
    assert not verify_signature(BODY, good, [])
    assert not verify_signature(BODY, sign(BODY, ""), [""])


WRONG_TYPE = re.escape("secret must be a str or a sequence of str (the current secret first), got")
EMPTY = re.escape("secret must not be empty: a str or a sequence of str (the current secret first)")


@pytest.mark.parametrize(
    ("secret", "error", "message"),
    [
        (12345, TypeError, f"{WRONG_TYPE} int"),
        (None, TypeError, f"{WRONG_TYPE} NoneType"),
        (b"whsec_bytes", TypeError, f"{WRONG_TYPE} bytes"),
        ({"whsec_a": 1}, TypeError, f"{WRONG_TYPE} dict"),
        ("", ValueError, f"{EMPTY}, got an empty str"),
        ([], ValueError, f"{EMPTY}, got an empty list"),
        ([CURRENT, ""], ValueError, r"secret\[1\] is an empty str"),
        ([CURRENT, 7], TypeError, r"secret\[1\] must be a str, got int"),
        ((None,), TypeError, r"secret\[0\] must be a str, got NoneType"),
    ],
)
def test_a_secret_of_the_wrong_type_is_refused_at_once(
    secret: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        WebhookReceiver(secret, print)
    with pytest.raises(error, match=message):
        webhook_handler(secret, print)


@pytest.mark.parametrize("secret", [12345, None, [CURRENT, 7]])
def test_verify_signature_refuses_a_secret_of_the_wrong_type(secret: Any) -> None:
    with pytest.raises(TypeError, match="secret"):
        verify_signature(BODY, sign(BODY, CURRENT), secret)


def test_an_error_about_a_secret_never_shows_it() -> None:
    with pytest.raises(ValueError) as caught:
        WebhookReceiver(["whsec_keep_me_hidden", ""], print)
    assert "whsec_keep_me_hidden" not in str(caught.value)
