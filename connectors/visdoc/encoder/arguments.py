"""Checks of encoding arguments shared by the local model and the remote client."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UnknownPromptError, UnknownTaskError, UnsupportedDimError
from ..tokenization import PROMPT_PREFIXES

if TYPE_CHECKING:
    from ..checkpoint import PixelBudget

SYMMETRIC_TASKS = {"text-matching"}  # tasks whose queries and passages share the query prompt


def check_task(task: str, tasks: Sequence[str]) -> None:
    if task not in tasks:
        raise UnknownTaskError(f"unknown task {task!r}; this checkpoint has {list(tasks)}")


def check_dim(dim: int | None, dims: Sequence[int]) -> int:
    """The dense size to return: ``dim``, or the full size (``dims[-1]``, the hidden size) when None."""
    if dim is None:
        return dims[-1]
    if dim not in dims:
        raise UnsupportedDimError(f"dim={dim} is not a Matryoshka size of this model; use one of {list(dims)}")
    return dim


def check_prompt(prompt_name: str) -> None:
    if prompt_name not in PROMPT_PREFIXES:
        raise UnknownPromptError(f"unknown prompt_name {prompt_name!r}; expected one of {sorted(PROMPT_PREFIXES)}")


def prompt_for(task: str, prompt_name: str) -> str:
    """The prompt texts of ``task`` get: ``prompt_name``, but ``query`` for a symmetric task."""
    check_prompt(prompt_name)
    return "query" if task in SYMMETRIC_TASKS else prompt_name


def check_texts(texts: Sequence[Any]) -> None:
    """Every text must be a str; the first that is not is named by its index."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, expected str")


def check_outputs(dense: bool, multivector: bool) -> None:
    if not (dense or multivector):
        raise ValueError("nothing to compute: set dense=True and/or multivector=True")


def check_max_pixels(max_pixels: int | None, pixels: PixelBudget) -> None:
    """``max_pixels`` must lie within the checkpoint's budget."""
    floor, ceiling = pixels.min_pixels, pixels.max_pixels
    if max_pixels is not None and (not isinstance(max_pixels, int) or not floor <= max_pixels <= ceiling):
        raise ValueError(
            f"max_pixels must be an int between the checkpoint's min_pixels ({floor}) and max_pixels ({ceiling}), "
            f"got {max_pixels!r}"
        )


def as_list(items: Any, name: str) -> list[Any]:
    """Accept any iterable of inputs (generators included), but not a single input."""
    from PIL import Image

    if isinstance(items, (str, bytes, bytearray, os.PathLike, Image.Image)):
        raise TypeError(f"{name} must be a list of inputs, not a single {type(items).__name__}; wrap it in [...]")
    return list(items)
