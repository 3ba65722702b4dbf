"""What the wire wraps around the data: the answers' envelopes and the token endpoint's answer.

Callers never see these: the transport unwraps them (resources take ``.data``).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

__all__ = ["ItemEnvelope", "TokenAnswer"]

T = TypeVar("T")


class ItemEnvelope(msgspec.Struct, Generic[T]):
    data: T
    error: bool = False


class TokenAnswer(msgspec.Struct):
    access_token: str
    token_type: str = "Bearer"
    expires_in: float | None = None

    def __repr__(self) -> str:
        return f"TokenAnswer(token_type={self.token_type!r}, expires_in={self.expires_in!r})"
