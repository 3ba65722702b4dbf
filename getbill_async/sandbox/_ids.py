"""Opaque, reversible ids: a keyed permutation of a row number, shown as 12 hex digits.

The real API hands out "encrypted" ids. The sandbox mimics that without keeping a table of a
million strings: an id is the row number pushed through a keyed permutation of 48-bit numbers,
so it decodes back to the row in constant time and memory, and it looks random to a client.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["IdCodec"]

_BITS = 48
_MASK = (1 << _BITS) - 1
_HALF = _BITS // 2
_HEX12 = re.compile(r"[0-9a-f]{12}")


def _odd(value: int) -> int:
    return (value | 1) & _MASK


class IdCodec:
    """Maps row numbers (0 .. 2**48-1) to 12-char lowercase hex ids and back.

    Two rounds of "multiply by a keyed odd number, add a key, fold the high half onto the low
    half": each step is invertible modulo 2**48, and the result looks random to a reader.
    """

    __slots__ = ("_mul", "_add", "_inverse")

    def __init__(self, seed: int, domain: str) -> None:
        digest = hashlib.sha256(f"{domain}:{seed}".encode()).digest()
        words = [int.from_bytes(digest[6 * i : 6 * i + 6], "big") for i in range(4)]
        self._mul = (_odd(words[0]), _odd(words[1]))
        self._add = (words[2], words[3])
        self._inverse = tuple(pow(m, -1, 1 << _BITS) for m in self._mul)

    def encode(self, number: int) -> str:
        value = number
        for mul, add in zip(self._mul, self._add, strict=True):
            value = (value * mul + add) & _MASK
            value ^= value >> _HALF
        return f"{value:012x}"

    def decode(self, text: str) -> int | None:
        """The row number behind `text`, or None when `text` is not an id of this shape."""
        if not _HEX12.fullmatch(text):
            return None
        value = int(text, 16)
        for inverse, add in zip(reversed(self._inverse), reversed(self._add), strict=True):
            value ^= value >> _HALF  # folding a 24-bit high half is its own inverse
            value = ((value - add) * inverse) & _MASK
        return value
