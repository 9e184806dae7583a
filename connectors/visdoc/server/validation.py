"""What a client may name: :class:`UIError`, and the checks of collection names, point ids and
document ids that run before anything is looked up with them."""

from __future__ import annotations

import re
import uuid

from ..points import DOCUMENT_ID_PATTERN

COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class UIError(Exception):
    """A request the page cannot be given: HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_collection_name(name: str) -> bool:
    """Whether ``name`` is one the page uses (letters, digits, ``_`` and ``-``, at most 64)."""
    return bool(COLLECTION_NAME.fullmatch(name or ""))


def is_document_id(value: str) -> bool:
    """Whether ``value`` is the id of a document ingested from a file."""
    return bool(DOCUMENT_ID_PATTERN.fullmatch(value or ""))


def check_collection_name(name: str) -> str:
    """``name``, or 404 when it is not a collection name."""
    if not is_collection_name(name):
        raise UIError(404, "no such collection (names are letters, digits, '_' and '-')")
    return name


def check_point_id(value: str) -> str:
    """``value``, or 404 unless it is a point id in the canonical form the server hands out."""
    try:
        parsed = str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise UIError(404, "no such page") from None
    if parsed != value:  # only the canonical form the server hands out (lowercase, hyphenated)
        raise UIError(404, "no such page")
    return parsed


def check_document_id(value: str) -> str:
    """``value``, or 404 when it is not a document id."""
    if not is_document_id(value):
        raise UIError(404, "no such document")
    return value
