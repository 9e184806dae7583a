"""Build the torch network of a jina-embeddings-v4 checkpoint from stock transformers modules.

The backbone is transformers' ``Qwen2_5_VLModel`` (no language-model head), the multi-vector
projector is a plain ``Linear``, and the three task adapters are peft LoRA adapters that stay
resident; :meth:`Network.use_task` switches between them. By default the adapters run unmerged
(``W x + B A x``, as the reference does); with ``merge_adapters`` the active task's low-rank
update is folded into the weights (one matmul per layer instead of three; bf16 rounding differs
slightly), and switching task restores the original weights from a host copy first, in place:
compiled blocks keep their graphs across task switches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .checkpoint import ADAPTER_DIR, Checkpoint
from .errors import CheckpointError

PROJECTOR = "multi_vector_projector"
MERGED = "visdoc-merged"  # what a merged layer's ``merged_adapters`` holds, whatever the task (see ``_merge``)


class Network(nn.Module):
    """Backbone plus multi-vector projector; module names match the adapter file's keys."""

    def __init__(self, model: nn.Module, multi_vector_projector: nn.Linear) -> None:
        super().__init__()
        self.model = model
        self.multi_vector_projector = multi_vector_projector
        self._set_adapter: Callable[[str], None] | None = None  # peft's switch, set on load
        self._task: str | None = None
        self.merge_adapters = False
        self.compiled = False  # whether compile_towers ran
        self._original_weights: dict[str, torch.Tensor] = {}  # host copies of merged weights

    def use_task(self, task: str) -> None:
        """Activate one task's LoRA adapter (a no-op when it is already active)."""
        if self._task == task:
            return
        assert self._set_adapter is not None, "adapters are not attached"
        if self.merge_adapters:
            for _, layer in self._lora_layers():  # peft would otherwise unmerge in place on switching
                layer.merged_adapters = []
        self._set_adapter(task)
        self.requires_grad_(False)  # peft makes the active adapter trainable; compiled graphs guard on it
        if self.merge_adapters:
            self._merge(task)
        self._task = task

    def start_merging(self) -> None:
        """From now on, fold the active task's adapter into the weights (``merge_adapters``)."""
        self.merge_adapters = True
        task, self._task = self._task, None
        if task is not None:
            self.use_task(task)

    @torch.no_grad()
    def stop_merging(self) -> None:
        """Put the original weights back and run the adapters unmerged again. Call it while no
        other thread encodes with this network."""
        for name, layer in self._lora_layers():
            if name in self._original_weights:
                weight = layer.base_layer.weight
                weight.copy_(self._original_weights[name].to(weight.device, non_blocking=True))
            layer.merged_adapters = []
        self.merge_adapters = False
        self._original_weights.clear()  # ~5.6 GB of pinned host memory for the full model

    def compile_towers(self, backend: str | Callable = "inductor") -> None:
        """Compile each repeated block of both towers with ``torch.compile`` (regional compilation:
        the blocks share their code, so one compilation per block kind, task and modality serves
        every layer, in seconds instead of minutes for whole towers). What it buys is fused
        elementwise work: norms, rotary embeddings, SwiGLU, residuals and LoRA updates.

        A vision block whose attention loops over windows in Python (``sdpa``, ``eager``) keeps
        its attention out of the graph: compiling would unroll the loop, once per window count.
        ``backend`` is ``torch.compile``'s (tests count compilations with their own)."""
        windows_in_one_call = "flash" in self.model.visual.config._attn_implementation
        for block in self.model.visual.blocks:
            parts = (block,) if windows_in_one_call else (block.norm1, block.norm2, block.mlp)
            for part in parts:
                part.compile(dynamic=True, backend=backend)
        for layer in self.model.language_model.layers:
            layer.compile(dynamic=True, backend=backend)
        self.compiled = True

    def _lora_layers(self) -> Iterator[tuple[str, nn.Module]]:
        return ((n, m) for n, m in self.named_modules() if hasattr(m, "lora_A") and hasattr(m, "merged_adapters"))

    @torch.no_grad()
    def _merge(self, task: str) -> None:
        """Make every adapted weight ``W0 + scale * B A`` for ``task``, computed in float32 from the
        original ``W0`` (kept on the host), so switching tasks never accumulates rounding."""
        for name, layer in self._lora_layers():
            if task not in layer.lora_A:
                continue
            weight = layer.base_layer.weight
            if name not in self._original_weights:
                copy = weight.detach().to("cpu", copy=True)
                self._original_weights[name] = copy.pin_memory() if weight.is_cuda else copy
            original = self._original_weights[name].to(weight.device, torch.float32, non_blocking=True)
            delta = layer.lora_B[task].weight.float() @ layer.lora_A[task].weight.float()
            weight.copy_((original + delta * layer.scaling[task]).to(weight.dtype))
            # peft then runs the base layer alone; one name for every task, so compiled graphs, which
            # guard on it, stay valid across task switches (the weights change in place)
            layer.merged_adapters = [MERGED]


def backbone_config(ckpt: Checkpoint):  # noqa: ANN201 - transformers' Qwen2_5_VLConfig
    from transformers import Qwen2_5_VLConfig

    c = ckpt.config
    return Qwen2_5_VLConfig(
        text_config=c["text_config"],
        vision_config=c["vision_config"],
        image_token_id=c["image_token_id"],
        video_token_id=c.get("video_token_id", c["image_token_id"] + 1),
        vision_start_token_id=c["vision_start_token_id"],
        vision_end_token_id=c["vision_end_token_id"],
    )


def attention_name(attn_implementation: str) -> str:
    """What to build the backbone with: visdoc's ``varlen`` is switched on after building
    (:func:`use_attention`), since transformers refuses to build with an unknown "flash" name."""
    return "sdpa" if attn_implementation == "varlen" else attn_implementation


def use_attention(backbone: nn.Module, attn_implementation: str) -> None:
    """Point every (sub-)config of a built backbone at ``attn_implementation``."""
    from transformers import PreTrainedConfig

    from .attention import register

    name = register() if attn_implementation == "varlen" else attn_implementation
    for module in backbone.modules():
        config = getattr(module, "config", None)
        if isinstance(config, PreTrainedConfig):
            config._attn_implementation = name


def load_network(
    ckpt: Checkpoint, *, device: torch.device, dtype: torch.dtype, attn_implementation: str,
    merge_adapters: bool = False,
) -> Network:  # fmt: skip
    """Load weights, projector and every task adapter; return the network in eval mode."""
    from transformers import Qwen2_5_VLModel

    with _quiet_transformers():
        backbone, info = Qwen2_5_VLModel.from_pretrained(
            ckpt.path,
            config=backbone_config(ckpt),
            dtype=dtype,
            attn_implementation=attention_name(attn_implementation),
            output_loading_info=True,
        )
    if info["missing_keys"] or info["mismatched_keys"]:
        missing = sorted(info["missing_keys"]) + [str(k) for k in info["mismatched_keys"]]
        raise CheckpointError(f"checkpoint {ckpt.path} lacks or mismatches weights: {', '.join(missing[:8])}")
    use_attention(backbone, attn_implementation)
    return _assemble(backbone, _load_projector(ckpt, dtype), ckpt, device, dtype, merge_adapters)


def random_network(
    ckpt: Checkpoint, *, device: torch.device, dtype: torch.dtype, attn_implementation: str,
    merge_adapters: bool = False, std: float = 0.02, seed: int = 0,
) -> Network:  # fmt: skip
    """A network of the checkpoint's shape with random weights made on ``device`` (benchmarks:
    a full-size model without writing or reading 7.5 GB of weights). Adapters come from the
    checkpoint folder as usual."""
    from transformers import Qwen2_5_VLModel

    torch.manual_seed(seed)
    config = backbone_config(ckpt)
    config._attn_implementation = attention_name(attn_implementation)
    with torch.device(device):  # float32 first: the rotary buffers are computed as the model builds
        backbone = Qwen2_5_VLModel(config)
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            if param.ndim == 1 and "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, std)
    use_attention(backbone, attn_implementation)
    projector = nn.Linear(ckpt.hidden_size, ckpt.multivector_dim, dtype=dtype, device=device)
    nn.init.normal_(projector.weight, 0.0, std)
    return _assemble(backbone, projector, ckpt, device, dtype, merge_adapters)


def _assemble(
    backbone: nn.Module, projector: nn.Linear, ckpt: Checkpoint, device: torch.device, dtype: torch.dtype,
    merge_adapters: bool,
) -> Network:  # fmt: skip
    network = Network(backbone, projector)
    _attach_adapters(network, ckpt)
    for param in network.parameters():  # weights only: rotary inv_freq buffers stay float32, as loaded
        param.data = param.data.to(dtype)
    network = network.to(device).eval()
    if device.type == "cuda":
        for block in network.model.visual.blocks:
            pad_intermediate(block.mlp)
    if merge_adapters:
        network.start_merging()
    return network


@torch.no_grad()
def pad_intermediate(mlp: nn.Module, multiple: int = 128) -> None:
    """Zero-pad a gated MLP's intermediate width up to a multiple of ``multiple``.

    The extra gate and up rows give ``act(0) * 0 = 0`` and the extra down columns are zero, so
    the output is unchanged; the matmuls get tensor-core-friendly shapes instead (the vision
    tower's 3420 is not even a multiple of 8, which sends cuBLAS to slower kernels). Applied on
    CUDA only. Unadapted layers only: a LoRA-wrapped projection is left as it is."""
    width = mlp.gate_proj.out_features
    extra = -width % multiple
    layers = ("gate_proj", "up_proj", "down_proj")
    if extra == 0 or not all(isinstance(mlp.get_submodule(name), nn.Linear) for name in layers):
        return
    for name in ("gate_proj", "up_proj"):
        layer = mlp.get_submodule(name)
        layer.weight = nn.Parameter(torch.cat([layer.weight, layer.weight.new_zeros(extra, layer.in_features)]), False)
        if layer.bias is not None:
            layer.bias = nn.Parameter(torch.cat([layer.bias, layer.bias.new_zeros(extra)]), False)
        layer.out_features += extra
    down = mlp.down_proj
    down.weight = nn.Parameter(torch.cat([down.weight, down.weight.new_zeros(down.out_features, extra)], 1), False)
    down.in_features += extra
    mlp.intermediate_size = width + extra


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
