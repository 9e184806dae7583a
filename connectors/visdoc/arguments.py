"""Checks of encoding arguments shared by the local model and the remote client."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UnknownPromptError, UnknownTaskError, UnsupportedDimError
from .tokenization import PROMPT_PREFIXES


def check_task(task: str, tasks: Sequence[str]) -> None:
    if task not in tasks:
        raise UnknownTaskError(f"unknown task {task!r}; this checkpoint has {list(tasks)}")


def check_dim(dim: int | None, dims: Sequence[int]) -> int:
    """The dense size to return: ``dim``, or the full size when None."""
    if dim is None:
        return dims[-1]
    if dim not in dims:
        raise UnsupportedDimError(f"dim={dim} is not a Matryoshka size of this model; use one of {list(dims)}")
    return dim


def check_prompt(prompt_name: str) -> None:
    if prompt_name not in PROMPT_PREFIXES:
        raise UnknownPromptError(f"unknown prompt_name {prompt_name!r}; expected one of {sorted(PROMPT_PREFIXES)}")


def check_outputs(dense: bool, multivector: bool) -> None:
    if not (dense or multivector):
        raise ValueError("nothing to compute: set dense=True and/or multivector=True")
