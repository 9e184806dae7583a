"""Build the torch network of a jina-embeddings-v4 checkpoint from stock transformers modules.

The backbone is transformers' ``Qwen2_5_VLModel`` (no language-model head), the multi-vector
projector is a plain ``Linear``, and the three task adapters are peft LoRA adapters that stay
resident and unmerged; :meth:`Network.use_task` switches between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .checkpoint import ADAPTER_DIR, Checkpoint
from .errors import CheckpointError

PROJECTOR = "multi_vector_projector"


class Network(nn.Module):
    """Backbone plus multi-vector projector; module names match the adapter file's keys."""

    def __init__(self, model: nn.Module, multi_vector_projector: nn.Linear) -> None:
        super().__init__()
        self.model = model
        self.multi_vector_projector = multi_vector_projector
        self._set_adapter: Callable[[str], None] | None = None  # peft's switch, set on load
        self._task: str | None = None

    def use_task(self, task: str) -> None:
        """Activate one task's LoRA adapter (a no-op when it is already active)."""
        if self._task != task:
            assert self._set_adapter is not None, "adapters are not attached"
            self._set_adapter(task)
            self._task = task


def load_network(ckpt: Checkpoint, *, device: torch.device, dtype: torch.dtype, attn_implementation: str) -> Network:
    """Load weights, projector and every task adapter; return the network in eval mode."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel

    c = ckpt.config
    config = Qwen2_5_VLConfig(
        text_config=c["text_config"],
        vision_config=c["vision_config"],
        image_token_id=c["image_token_id"],
        video_token_id=c.get("video_token_id", c["image_token_id"] + 1),
        vision_start_token_id=c["vision_start_token_id"],
        vision_end_token_id=c["vision_end_token_id"],
    )
    with _quiet_transformers():
        backbone, info = Qwen2_5_VLModel.from_pretrained(
            ckpt.path,
            config=config,
            dtype=dtype,
            attn_implementation=attn_implementation,
            output_loading_info=True,
        )
    if info["missing_keys"] or info["mismatched_keys"]:
        missing = sorted(info["missing_keys"]) + [str(k) for k in info["mismatched_keys"]]
        raise CheckpointError(f"checkpoint {ckpt.path} lacks or mismatches weights: {', '.join(missing[:8])}")
    network = Network(backbone, _load_projector(ckpt, dtype))
    _attach_adapters(network, ckpt)
    for param in network.parameters():  # weights only: rotary inv_freq buffers stay float32, as loaded
        param.data = param.data.to(dtype)
    return network.to(device).eval()


def _load_projector(ckpt: Checkpoint, dtype: torch.dtype) -> nn.Linear:
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for file in ckpt.weight_files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith(PROJECTOR + "."):
                    tensors[key.removeprefix(PROJECTOR + ".")] = f.get_tensor(key)
    shape = (ckpt.multivector_dim, ckpt.hidden_size)
    if "weight" not in tensors or tuple(tensors["weight"].shape) != shape:
        raise CheckpointError(f"checkpoint {ckpt.path} has no {PROJECTOR}.weight of shape {list(shape)}")
    projector = nn.Linear(ckpt.hidden_size, ckpt.multivector_dim, bias="bias" in tensors, dtype=dtype)
    projector.load_state_dict(tensors)
    return projector


def _attach_adapters(network: Network, ckpt: Checkpoint) -> None:
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    folder = ckpt.path / ADAPTER_DIR
    weights = load_file(str(folder / "adapter_model.safetensors"))
    config = LoraConfig.from_pretrained(str(folder))
    config.inference_mode = True
    config.task_type = None
    config.base_model_name_or_path = None  # the backbone is already loaded; peft needs no hub id
    # target exactly the modules the file has weights for, whatever the config's regex says
    config.target_modules = sorted({_adapted_module(key) for key in weights if ".lora_A." in key})
    config.exclude_modules = None
    tasks = ckpt.task_names
    peft_model = get_peft_model(network, config, adapter_name=tasks[0], autocast_adapter_dtype=False)
    for task in tasks[1:]:
        peft_model.add_adapter(task, config)
    result = peft_model.load_state_dict(weights, strict=False)
    lora_missing = [k for k in result.missing_keys if ".lora_" in k]
    if result.unexpected_keys or lora_missing:
        bad = (result.unexpected_keys + lora_missing)[:8]
        raise CheckpointError(f"adapters in {folder} do not fit the model: {', '.join(bad)}")
    network._set_adapter = peft_model.set_adapter
    network.use_task(tasks[0])


def _adapted_module(key: str) -> str:
    """``base_model.model.X.lora_A.task.weight`` -> ``X``."""
    return key.split(".lora_A.")[0].removeprefix("base_model.model.")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar for one call, then restore them."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
