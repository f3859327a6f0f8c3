"""Page sizes and page tokens of the App service's List methods.

A token is opaque to clients: the URL-safe base64 of what it pages through and the
last id returned. Paging resumes *after* that id, so a token stays valid however the
collection changes meanwhile: a page never repeats an item nor skips one that existed
throughout.
"""

from __future__ import annotations

import base64
import binascii

from astra.errors import FieldViolation, InvalidArgumentError


def page_size(value: int, *, default: int, limit: int) -> int:
    """The page size asked for (0: ``default``).

    Raises:
        InvalidArgumentError: ``value`` is negative or over ``limit``.
    """
    if not 0 <= value <= limit:
        raise InvalidArgumentError([FieldViolation("page_size", f"must be in 0..{limit}")])
    return value or default


def encode_token(kind: str, last: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}\0{last}".encode()).decode()


def decode_token(kind: str, token: str) -> str:
    """The last id named by ``token`` (``""`` for no token).

    Raises:
        InvalidArgumentError: ``token`` is not one of ``kind``'s tokens.
    """
    if not token:
        return ""
    try:
        found, _, last = base64.urlsafe_b64decode(token.encode()).decode().partition("\0")
    except (binascii.Error, UnicodeError, ValueError):
        found, last = "", ""
    if found != kind or not last:
        raise InvalidArgumentError(
            [FieldViolation("page_token", "is not a next_page_token of this method")]
        )
    return last
