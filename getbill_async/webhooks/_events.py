"""Webhook events: the signature check, the typed events, ``parse_event`` and ``decode_event``.

Public through ``getbill_async.webhooks``; kept apart so the receiver's module stays short.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Sequence
from typing import Any, Union, get_args

import msgspec

from ..errors import DecodeError
from ..models import Debt, Followup

SIGNATURE_HEADER = "X-GetBill-Signature"
_HEX = frozenset(string.hexdigits)


def verify_signature(body: bytes, signature: str, secret: str | Sequence[str]) -> bool:
    """Whether ``signature`` is the hex HMAC-SHA256 of ``body`` under ``secret``.

    ``secret`` is one secret, or several while one is being rotated (the current one first):
    any one of them verifies. Compared in constant time; a ``sha256=`` prefix, surrounding
    spaces and the case of the hex digits are tolerated. An empty, non-hex or wrong-length
    signature is ``False``, and so is an empty secret.

    Args:
        body: the request's raw body, as received.
        signature: the ``X-GetBill-Signature`` header's value.
        secret: the webhook secret, or a sequence of them.

    Returns:
        Whether the signature is right.

    Raises:
        TypeError: ``secret`` is neither a str nor a sequence of str.
    """
    keys = _keys(secret, allow_empty=True)
    return _signed_by(body, signature, keys) is not None


def _checked_keys(secret: object) -> tuple[bytes, ...]:
    """The secrets a receiver verifies with, checked once, as keys (the current one first).

    Raises:
        TypeError: neither a str nor a sequence of str (an int, None, bytes, a dict).
        ValueError: an empty str, an empty sequence, or an empty str in it.
    """
    return _keys(secret, allow_empty=False)


def _keys(secret: object, *, allow_empty: bool) -> tuple[bytes, ...]:
    # Messages name the argument and what it takes, never a secret's value.
    allowed = "a str or a sequence of str (the current secret first)"
    if isinstance(secret, str):
        items: tuple[object, ...] = (secret,)
    elif isinstance(secret, Sequence) and not isinstance(secret, (bytes, bytearray)):
        items = tuple(secret)
    else:
        raise TypeError(f"secret must be {allowed}, got {type(secret).__name__}")
    texts: list[str] = []
    for n, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"secret[{n}] must be a str, got {type(item).__name__}")
        if not item and not allow_empty and not isinstance(secret, str):
            raise ValueError(f"secret[{n}] is an empty str: every secret must be non-empty")
        if item:
            texts.append(item)
    if not texts and not allow_empty:
        kind = type(secret).__name__
        raise ValueError(f"secret must not be empty: {allowed}, got an empty {kind}")
    return tuple(text.encode() for text in texts)


def _signed_by(body: bytes, signature: object, keys: tuple[bytes, ...]) -> int | None:
    """The index of the key ``signature`` was made with, or None.

    Every key is tried, so the time taken does not tell which one matched.
    """
    if not isinstance(signature, str) or not keys:
        return None
    given = signature.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:].strip()
    if len(given) != 64 or not _HEX.issuperset(given):
        return None
    given = given.lower()
    found = None
    for n, key in enumerate(keys):
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given) and found is None:
            found = n
    return found


class _Event(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """Base of the documented events; ``type`` is the event's name (``"followup.created"``).

    Every event has ``data`` (a ``Followup`` for the followup events, a ``Debt`` for the debt
    events, a dict for the events whose fields the docs do not name) and ``changes`` (the
    fields that changed, where the event says; else None).
    """

    changes: dict[str, Any] | None = None

    @property
    def type(self) -> str:
        tag = self.__struct_config__.tag
        return tag if isinstance(tag, str) else ""


class _FollowupEvent(_Event):
    data: Followup


class FollowupCreated(_FollowupEvent, tag="followup.created"):
    """A followup was created; ``data`` is the followup."""


class FollowupUpdated(_FollowupEvent, tag="followup.updated"):
    """A followup was updated; ``changes`` holds the fields that changed."""


class FollowupCompleted(_FollowupEvent, tag="followup.completed"):
    """A followup was carried out."""


class FollowupFailed(_FollowupEvent, tag="followup.failed"):
    """A followup failed."""


class _DebtEvent(_Event):
    data: Debt


class DebtCreated(_DebtEvent, tag="debt.created"):
    """A debt was created."""


class DebtUpdated(_DebtEvent, tag="debt.updated"):
    """A debt was updated."""


class DebtStatusChanged(_DebtEvent, tag="debt.status_changed"):
    """A debt's status changed (an open set: companies add their own statuses)."""


# The docs name these events but not their fields: their data stays a dict.
class _DataEvent(_Event):
    data: dict[str, Any]


class PaymentReceived(_DataEvent, tag="payment.received"):
    """The ``payment.received`` event."""


class PaymentFailed(_DataEvent, tag="payment.failed"):
    """The ``payment.failed`` event."""


class PaymentPlanCreated(_DataEvent, tag="payment_plan.created"):
    """The ``payment_plan.created`` event."""


class PaymentPlanCompleted(_DataEvent, tag="payment_plan.completed"):
    """The ``payment_plan.completed`` event."""


class PaymentPlanCanceled(_DataEvent, tag="payment_plan.canceled"):
    """The ``payment_plan.canceled`` event."""


class CompanyCreditsLow(_DataEvent, tag="company.credits_low"):
    """The ``company.credits_low`` event."""


class ReportGenerated(_DataEvent, tag="report.generated"):
    """The ``report.generated`` event."""


class UnknownEvent(msgspec.Struct, kw_only=True, gc=False):
    """An event type this version of the SDK does not know: its name and raw data.

    Attributes:
        type: the event's name.
        data: its data, as decoded JSON.
        changes: its changes, as decoded JSON (None when absent).
    """

    type: str
    data: Any = None
    changes: Any = None


class UndecodedEvent(msgspec.Struct, kw_only=True, gc=False):
    """A signed body that does not decode as a documented event: its raw parts and why.

    The receivers deliver it instead of refusing the body, so a correctly signed event is
    never lost to a decoding rule (a ``followup.created`` whose ``duration_ms`` is the
    string ``"180000"``, a ``debt.created`` whose ``amount`` is ``"12.50"``, a body that is
    not JSON at all). Handle it the way you handle a poison message: store ``body`` and look
    at it later, or repair what ``error`` names and pass it on.

    Attributes:
        type: the body's ``"type"`` when it is a string (``"followup.created"``), else ``""``.
        data: the body's ``"data"`` as plain JSON values (dicts, lists, strings, numbers),
            or ``None`` when the body is not a JSON object.
        changes: the body's ``"changes"``, the same way.
        error: why it did not decode; msgspec's message names the field's path
            (``"Expected `int`, got `str` - at `$.data.duration_ms`"``).
        body: the raw body, byte for byte as it was signed.
    """

    type: str = ""
    data: Any = None
    changes: Any = None
    error: str = ""
    body: bytes = b""


class _Envelope(msgspec.Struct, gc=False):
    """The parts of any JSON object, kept as they are."""

    type: Any = None
    data: Any = None
    changes: Any = None


_KnownEvent = Union[  # noqa: UP007 - msgspec needs a runtime Union of the tagged structs
    FollowupCreated,
    FollowupUpdated,
    FollowupCompleted,
    FollowupFailed,
    DebtCreated,
    DebtUpdated,
    DebtStatusChanged,
    PaymentReceived,
    PaymentFailed,
    PaymentPlanCreated,
    PaymentPlanCompleted,
    PaymentPlanCanceled,
    CompanyCreditsLow,
    ReportGenerated,
]
WebhookEvent = Union[_KnownEvent, UnknownEvent, UndecodedEvent]  # noqa: UP007
KNOWN_TYPES: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag) for cls in get_args(_KnownEvent)
)

_known_decoder: msgspec.json.Decoder[_KnownEvent] = msgspec.json.Decoder(_KnownEvent)
_unknown_decoder = msgspec.json.Decoder(UnknownEvent)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def parse_event(body: bytes) -> WebhookEvent:
    """The typed event in a webhook body.

    A documented type decodes to its struct; a type this SDK does not know decodes to
    ``UnknownEvent`` (never an error). ``decode_event`` is the same without the error.

    Args:
        body: the raw body of the POST.

    Returns:
        The event: one of the documented structs, or ``UnknownEvent``.

    Raises:
        DecodeError: the body is not a JSON object with a string ``type``, or it is a
            documented event whose data does not fit.
    """
    event, error = _decode(body)
    if event is None:
        raise DecodeError(f"webhook body is not a documented event ({error})", body=body)
    return event


def decode_event(body: bytes) -> WebhookEvent:
    """The event in a webhook body, never an error: what the receivers deliver.

    Args:
        body: the raw body of the POST (check its signature first).

    Returns:
        What ``parse_event`` returns, or an ``UndecodedEvent`` (with the raw parts and the
        reason) where ``parse_event`` raises ``DecodeError``.
    """
    event, error = _decode(body)
    if event is not None:
        return event
    try:
        raw = _envelope_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        raw = _Envelope()
    kind = raw.type if isinstance(raw.type, str) else ""
    return UndecodedEvent(type=kind, data=raw.data, changes=raw.changes, error=error, body=body)


def _decode(body: bytes) -> tuple[WebhookEvent | None, str]:
    """The typed or unknown event, or None and why not."""
    try:
        return _known_decoder.decode(body), ""
    except (msgspec.DecodeError, RecursionError) as known_error:
        why = str(known_error) or type(known_error).__name__
    try:
        event = _unknown_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as unknown_error:
        # Not even an object with a string type: this error says more than the first.
        return None, str(unknown_error) or type(unknown_error).__name__
    if event.type not in KNOWN_TYPES:
        return event, ""
    return None, why
