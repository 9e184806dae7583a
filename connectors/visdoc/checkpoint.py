"""Locate a jina-embeddings-v4 checkpoint and read the facts the encoder needs from its files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError

DEFAULT_MODEL = "jinaai/jina-embeddings-v4"
MODEL_ENV = "VISDOC_MODEL"  # the model every command and wrapper uses when none is named
ADAPTER_DIR = "adapters"
ADAPTER_WEIGHTS = f"{ADAPTER_DIR}/adapter_model.safetensors"
REQUIRED_FILES = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    f"{ADAPTER_DIR}/adapter_config.json",
    ADAPTER_WEIGHTS,
)
WEIGHTS_INDEX = "model.safetensors.index.json"
SINGLE_WEIGHTS = "model.safetensors"
CONFIG_PATTERNS = [  # configuration and tokenizer: what a process that runs no model reads
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    f"{ADAPTER_DIR}/adapter_config.json",
]
HUB_PATTERNS = [  # what the encoder reads, nothing else the repository may hold
    *CONFIG_PATTERNS,
    "model*.safetensors",
    "model.safetensors.index.json",
    ADAPTER_WEIGHTS,
]
CONFIG_KEYS = (
    "text_config",
    "vision_config",
    "task_names",
    "matryoshka_dims",
    "multi_vector_projector_dim",
    "image_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
)


@dataclass(frozen=True)
class PixelBudget:
    """Image preprocessing settings from ``preprocessor_config.json``."""

    min_pixels: int
    max_pixels: int
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    rescale_factor: float
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    @property
    def factor(self) -> int:
        """Side of the pixel square that becomes one language-model token (28 for Qwen2.5-VL)."""
        return self.patch_size * self.merge_size


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder on disk and its parsed configuration."""

    path: Path
    config: dict[str, Any]
    pixels: PixelBudget
    weight_files: tuple[Path, ...]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.config["task_names"])

    @property
    def matryoshka_dims(self) -> tuple[int, ...]:
        return tuple(self.config["matryoshka_dims"])

    @property
    def dims(self) -> tuple[int, ...]:
        """Sizes the dense vector may have: the Matryoshka sizes, then the hidden size when the list
        stops below it. The last is the full, untruncated size (what ``dim=None`` returns, as the
        reference does with ``truncate_dim`` null)."""
        dims = self.matryoshka_dims
        return dims if dims and dims[-1] >= self.hidden_size else (*dims, self.hidden_size)

    @property
    def hidden_size(self) -> int:
        return int(self.config["text_config"]["hidden_size"])

    @property
    def multivector_dim(self) -> int:
        return int(self.config["multi_vector_projector_dim"])


def resolve(name_or_path: str | Path, *, revision: str | None = None, weights: bool = True) -> Path:
    """Return a local folder for a checkpoint path or a Hugging Face hub id (downloading it;
    ``weights=False``: only its configuration and tokenizer files, :data:`CONFIG_PATTERNS`)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path} is a file; expected a checkpoint folder")
        return path
    if str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") != 1:
        raise CheckpointError(f"{name_or_path}: no such checkpoint folder (and not a hub id 'owner/name')")
    from huggingface_hub import snapshot_download

    try:
        patterns = HUB_PATTERNS if weights else CONFIG_PATTERNS
        return Path(snapshot_download(str(name_or_path), revision=revision, allow_patterns=patterns))
    except Exception as exc:  # network errors, unknown repo, gated repo ...
        raise CheckpointError(f"could not fetch {name_or_path} from the Hugging Face hub: {exc}") from exc


def read_checkpoint(folder: Path, *, weights: bool = True, adapters: bool = True) -> Checkpoint:
    """Validate a checkpoint folder and parse its configuration files (``weights=False``: a folder
    without model weights, for a randomly initialised network; ``adapters=False`` as well: without
    the adapters' weights, for a process that only reads the configuration and tokenizer)."""
    required = REQUIRED_FILES if adapters else tuple(name for name in REQUIRED_FILES if name != ADAPTER_WEIGHTS)
    missing = [name for name in required if not (folder / name).is_file()]
    weight_files = _weight_files(folder, missing) if weights else ()
    if missing:
        raise CheckpointError(f"checkpoint {folder} is missing: {', '.join(missing)}")
    config = _read_json(folder / "config.json")
    absent = [key for key in CONFIG_KEYS if key not in config]
    if absent:
        raise CheckpointError(f"{folder / 'config.json'} lacks {', '.join(absent)}")
    pre = _read_json(folder / "preprocessor_config.json")
    try:
        pixels = PixelBudget(
            min_pixels=int(pre["min_pixels"]),
            max_pixels=int(pre["max_pixels"]),
            patch_size=int(pre["patch_size"]),
            merge_size=int(pre["merge_size"]),
            temporal_patch_size=int(pre["temporal_patch_size"]),
            rescale_factor=float(pre["rescale_factor"]),
            image_mean=tuple(pre["image_mean"]),
            image_std=tuple(pre["image_std"]),
        )
    except KeyError as exc:
        raise CheckpointError(f"{folder / 'preprocessor_config.json'} lacks {exc}") from None
    return Checkpoint(path=folder, config=config, pixels=pixels, weight_files=weight_files)


def read_config(name_or_path: str | Path, *, revision: str | None = None) -> Checkpoint:
    """A checkpoint's configuration and tokenizer for a process that loads no weights (the driver
    of a distributed ingestion): a hub id's weight files are not downloaded. A local folder is
    still checked for them, which costs nothing and fails before any worker starts."""
    local = Path(name_or_path).expanduser().exists()
    folder = resolve(name_or_path, revision=revision, weights=False)
    return read_checkpoint(folder, weights=local, adapters=local)


def _weight_files(folder: Path, missing: list[str]) -> tuple[Path, ...]:
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        shards = sorted(set(_read_json(index)["weight_map"].values()))
        missing.extend(name for name in shards if not (folder / name).is_file())
        return tuple(folder / name for name in shards)
    if (folder / SINGLE_WEIGHTS).is_file():
        return (folder / SINGLE_WEIGHTS,)
    missing.append(f"{WEIGHTS_INDEX} or {SINGLE_WEIGHTS}")
    return ()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
