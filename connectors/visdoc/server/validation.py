"""What a client may name: :class:`UIError`, and the checks of collection names, point ids and
document ids that run before anything is looked up with them; texts that are not valid Unicode
(lone surrogates); and which addresses count as loopback (this machine)."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterable
from typing import Any

from ..points import DOCUMENT_ID_PATTERN

COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SURROGATE = re.compile(r"[\ud800-\udfff]")  # json.loads joins valid pairs: any surrogate left is a lone one
LOOPBACK_NAMES = frozenset({"localhost"})


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


def lone_surrogate(text: str) -> str | None:
    """Where ``text`` holds a lone surrogate, which no UTF-8 text (nor the tokenizer) can carry, e.g.
    ``"a lone surrogate U+D800 at character 3"``; None when it holds none."""
    found = SURROGATE.search(text)
    return f"a lone surrogate U+{ord(found.group()):04X} at character {found.start()}" if found else None


def check_text(value: str, name: str) -> str:
    """``value``, or 422 naming the parameter ``name`` when it is not valid Unicode."""
    problem = lone_surrogate(value)
    if problem:
        raise UIError(422, f"{name} is not valid Unicode text: {problem}")
    return value


def _surrogate_in(value: Any) -> str | None:
    """:func:`lone_surrogate` of the first string in ``value`` (decoded JSON: keys too) that has one."""
    pending = [value]  # a stack, not recursion: the JSON may be nested as deep as the parser allowed
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            problem = lone_surrogate(item)
            if problem:
                return problem
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            pending += item
    return None


def invalid_unicode(errors: Iterable[dict[str, Any]]) -> str | None:
    """The message for request-validation ``errors`` (FastAPI's) when one's input holds a lone surrogate
    (that input cannot be echoed back in a UTF-8 response), naming the parameter; else None."""
    for error in errors:
        problem = _surrogate_in(error.get("input"))
        if problem:
            location = [str(part) for part in error.get("loc", ())][1:]  # without "body" / "query"
            name = ".".join(location) or "the request body"
            return f"{name} is not valid Unicode text: {problem}"
    return None


def is_loopback_address(value: str | None) -> bool:
    """Whether ``value`` is a loopback IP address: 127.0.0.0/8, ``::1`` or IPv4-mapped ``::ffff:127.x``."""
    try:
        address = ipaddress.ip_address(value or "")
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def is_loopback_host(host: str) -> bool:
    """Whether a bind address only listens on this machine: ``localhost``, 127.x, ``::1`` (``[::1]``);
    ``0.0.0.0``, ``::``, other addresses and names are not."""
    host = host.strip().lower()
    return host in LOOPBACK_NAMES or is_loopback_address(host[1:-1] if host.startswith("[") else host)
