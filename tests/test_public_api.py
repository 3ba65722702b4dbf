"""The public surface: every exported name exists, and the error tree is as documented."""

from __future__ import annotations

import inspect

import getbill_async
from getbill_async import errors, models


def test_all_names_exist() -> None:
    for name in getbill_async.__all__:
        assert getattr(getbill_async, name) is not None, name


def test_every_public_error_and_model_is_exported() -> None:
    for module in (errors, models):
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__:
                if not name.startswith("_"):
                    assert name in getbill_async.__all__, name


def test_the_sync_face_exports_its_names() -> None:
    import getbill_async.sync as sync

    for name in sync.__all__:
        assert getattr(sync, name) is not None, name
    assert sync.GetBillClient.__name__ == getbill_async.GetBillClient.__name__
    assert sync.Outbox.__name__ == getbill_async.Outbox.__name__


def test_error_tree() -> None:
    e = errors
    for cls in (
        e.AuthenticationError,
        e.PermissionDeniedError,
        e.NotFoundError,
        e.ValidationError,
        e.RateLimitError,
        e.ServerError,
    ):
        assert issubclass(cls, e.APIError)
    assert issubclass(e.APITimeoutError, e.APIConnectionError)
    for base in (
        e.APIError,
        e.APIConnectionError,
        e.DecodeError,
        e.AmbiguousWriteError,
        e.BudgetExhaustedError,
        e.BudgetUnavailableError,
        e.ConfigurationError,
        e.EventLoopError,
    ):
        assert issubclass(base, e.GetBillError)
    assert issubclass(e.EventLoopError, RuntimeError)


def test_api_error_message_names_what_was_being_done() -> None:
    err = errors.ValidationError(
        "Validation failed",
        status=400,
        details={"status": ["must be one of ..."]},
        method="POST",
        path="/followups",
    )
    assert str(err) == "POST /followups: 400 Validation failed (status: must be one of ...)"
    assert err.field == "status"
