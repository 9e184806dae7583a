"""When a local model merges its task adapters and compiles its blocks: the fast path's policy.

Merged adapters and regional compilation take an H100 from 27.8 to 54.1 pages/s, but compiling
costs ~20 s once per process and merging moves bf16 results slightly (docs/model.md). They are
the default for long-running work on CUDA (``visdoc serve``, ``visdoc ingest`` of at least
:data:`LONG_INGEST_PAGES` pages, Ray GPU actors); short one-off calls and the CPU stay exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .local import JinaV4

LONG_INGEST_PAGES = 200  # a choice: ~4 s of GPU work at 54 pages/s against ~20 s of compiling; to be measured
WARM_UP_NOTE = "compiling the model's blocks (once per process, ~20 s)"


def fast_path(device: str | torch.device, long_running: bool) -> bool:
    """Whether merged adapters and compiled blocks are the default: long-running work on CUDA."""
    import torch

    return long_running and torch.device(device).type == "cuda"


def speed_choice(
    device: str | torch.device, long_running: bool, *, merge_adapters: bool | None = None, compile: bool | None = None
) -> tuple[bool, bool]:
    """``(merge_adapters, compile)`` as given, each ``None`` ("auto") replaced by :func:`fast_path`."""
    fast = fast_path(device, long_running)
    return (fast if merge_adapters is None else merge_adapters, fast if compile is None else compile)


def warm_up(model: JinaV4) -> None:
    """Compile now rather than on the first request: two texts and two small pages through the model
    (two of each, so a padded batch of several rows is compiled too). With merged adapters a task
    switch keeps the graphs; unmerged, each further task compiles once more on first use."""
    from PIL import Image

    model.encode_texts(["warm-up", "compiling the model's blocks once per process"], prompt_name="passage")
    model.encode_images([Image.new("RGB", (224, 224), "white"), Image.new("RGB", (280, 196), "gray")])
