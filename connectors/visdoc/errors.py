"""Exception types raised by visdoc. All derive from :class:`VisdocError`."""

from __future__ import annotations


class VisdocError(Exception):
    """Base class of every error visdoc raises on purpose."""


class CheckpointError(VisdocError):
    """A checkpoint folder or hub id cannot be used (missing or inconsistent files)."""


class UnknownTaskError(VisdocError, ValueError):
    """The task is not one of the checkpoint's task adapters."""


class UnknownPromptError(VisdocError, ValueError):
    """The prompt name is neither ``query`` nor ``passage``."""


class UnsupportedDimError(VisdocError, ValueError):
    """The requested embedding size is not one of the checkpoint's Matryoshka dims."""


class SourceError(VisdocError):
    """A file or page that cannot be read; the message is meant for the ingestion summary."""


class ImageLoadError(VisdocError, ValueError):
    """An image input could not be read or decoded; the message names its index and source."""

    def __init__(self, index: int, source: str, reason: str) -> None:
        self.index = index
        self.source = source
        self.reason = reason
        super().__init__(f"image {index} ({source}): {reason}")
