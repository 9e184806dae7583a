"""Build random jina-embeddings-v4 checkpoints in the real file layout, offline.

Tests and benchmarks use these instead of downloading weights: same file names, old-style
weight names, adapter key layout and preprocessing config as the published checkpoint, with
sizes you choose. The tokenizer is either a small byte-level BPE built here (special tokens at
small ids, which proves nothing reads the 3B model's ids) or copied from another checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

TASKS = ("retrieval", "text-matching", "code")
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 602112,
    "patch_size": 14,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "resample": 3,
    "rescale_factor": 1 / 255,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_processor_type": "Qwen2VLImageProcessor",
}


@dataclass
class TinySpec:
    """Shape of a random checkpoint. Defaults give a model of a few hundred thousand weights."""

    hidden_size: int = 128
    layers: int = 4
    heads: int = 8
    kv_heads: int = 2
    intermediate_size: int = 256
    mrope_section: tuple[int, int, int] = (2, 3, 3)
    vision_depth: int = 6
    vision_fullatt_blocks: tuple[int, ...] = (2, 5)
    vision_hidden: int = 64
    vision_heads: int = 4
    vision_intermediate: int = 128
    window_size: int = 112
    matryoshka_dims: tuple[int, ...] = (32, 64, 128)
    multivector_dim: int = 128
    lora_rank: int = 4
    lora_alpha: int = 8
    max_pixels: int = 602112
    init_std: float = 0.05
    seed: int = 0
    vocab_size: int | None = None  # None: the tokenizer's size rounded up to a multiple of 64
    tokenizer_from: Path | None = None  # copy the tokenizer of this checkpoint instead of building one
    tasks: tuple[str, ...] = field(default=TASKS)


FULL_SPEC = TinySpec(  # jina-embeddings-v4's real shapes (Qwen2.5-VL-3B, r=32 adapters)
    hidden_size=2048,
    layers=36,
    heads=16,
    kv_heads=2,
    intermediate_size=11008,
    mrope_section=(16, 24, 24),
    vision_depth=32,
    vision_fullatt_blocks=(7, 15, 23, 31),
    vision_hidden=1280,
    vision_heads=16,
    vision_intermediate=3420,
    matryoshka_dims=(128, 256, 512, 1024, 2048),
    multivector_dim=128,
    lora_rank=32,
    lora_alpha=32,
    init_std=0.02,
    vocab_size=151936,
)


def build_checkpoint(folder: str | Path, spec: TinySpec | None = None, *, weights: bool = True) -> Path:
    """Write a random checkpoint to ``folder`` and return its path. ``weights=False`` leaves out the
    model weights (adapters are still written): load it with ``JinaV4.from_pretrained(folder, random_weights=True)``."""
    import torch

    spec = spec or TinySpec()
    folder = Path(folder)
    (folder / "adapters").mkdir(parents=True, exist_ok=True)
    ids = _write_tokenizer(folder, spec)
    vocab = spec.vocab_size or -(-ids["__size__"] // 64) * 64
    config = _config(spec, ids, vocab)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR | {"max_pixels": spec.max_pixels}))
    generator = torch.Generator().manual_seed(spec.seed)
    if weights:
        _write_weights(folder, spec, config, generator)
    _write_adapters(folder, spec, generator)
    return folder


def _write_tokenizer(folder: Path, spec: TinySpec) -> dict[str, int]:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if spec.tokenizer_from is not None:
        for name in TOKENIZER_FILES:
            source = Path(spec.tokenizer_from) / name
            if source.is_file():
                shutil.copyfile(source, folder / name)
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    else:
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(sorted(alphabet))}, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
        tok.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "Qwen2Tokenizer", "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"})
        )
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    ids["__size__"] = tok.get_vocab_size(with_added_tokens=True)
    return ids


def _config(spec: TinySpec, ids: dict[str, int], vocab: int) -> dict:
    rope = {"mrope_section": list(spec.mrope_section), "rope_type": "default", "type": "default"}
    text = {
        "model_type": "qwen2_5_vl_text",
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "intermediate_size": spec.intermediate_size,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": rope,
        "max_position_embeddings": 128000,
        "vocab_size": vocab,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "initializer_range": spec.init_std,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "torch_dtype": "bfloat16",
    }
    vision = {
        "model_type": "qwen2_5_vl",
        "depth": spec.vision_depth,
        "fullatt_block_indexes": list(spec.vision_fullatt_blocks),
        "hidden_size": spec.vision_hidden,
        "num_heads": spec.vision_heads,
        "intermediate_size": spec.vision_intermediate,
        "out_hidden_size": spec.hidden_size,
        "hidden_act": "silu",
        "in_channels": 3,
        "in_chans": 3,
        "patch_size": 14,
        "spatial_patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        "window_size": spec.window_size,
        "initializer_range": spec.init_std,
        "torch_dtype": "bfloat16",
    }
    return {
        "_name_or_path": "visdoc/random-tiny",
        "architectures": ["JinaEmbeddingsV4Model"],
        "auto_map": {"AutoModel": "modeling_jina_embeddings_v4.JinaEmbeddingsV4Model"},
        "text_config": text,
        "vision_config": vision,
        "hidden_size": spec.hidden_size,
        "vocab_size": vocab,
        "task_names": list(spec.tasks),
        "matryoshka_dims": list(spec.matryoshka_dims),
        "truncate_dim": None,
        "multi_vector_projector_dim": spec.multivector_dim,
        "single_vector_pool_strategy": "mean",
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "_attn_implementation": "flash_attention_2",
        "torch_dtype": "bfloat16",
    }


def _write_weights(folder: Path, spec: TinySpec, config: dict, generator) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel

    qwen = Qwen2_5_VLConfig(text_config=config["text_config"], vision_config=config["vision_config"])
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Qwen2_5_VLModel(qwen).state_dict().items()}
    tensors = {}
    for name, shape in shapes.items():
        old = name.replace("language_model.", "model.", 1) if name.startswith("language_model.") else name
        if name.endswith("norm.weight") or name.endswith(("norm1.weight", "norm2.weight", "ln_q.weight")):
            value = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            value = spec.init_std * torch.randn(shape, generator=generator)
        tensors[old] = value.to(torch.bfloat16)
    tensors["multi_vector_projector.weight"] = (
        spec.init_std * torch.randn(spec.multivector_dim, spec.hidden_size, generator=generator)
    ).to(torch.bfloat16)
    tensors["multi_vector_projector.bias"] = (
        spec.init_std * torch.randn(spec.multivector_dim, generator=generator)
    ).to(torch.bfloat16)
    shards = {"model-00001-of-00002.safetensors": {}, "model-00002-of-00002.safetensors": {}}
    for key, value in tensors.items():
        shard = "model-00001-of-00002.safetensors" if key.startswith("model.") else "model-00002-of-00002.safetensors"
        shards[shard][key] = value
    weight_map = {}
    for shard, content in shards.items():
        save_file(content, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(content, shard))
    index = {"metadata": {"total_size": sum(v.numel() * 2 for v in tensors.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_adapters(folder: Path, spec: TinySpec, generator) -> None:
    import torch
    from safetensors.torch import save_file

    h, kv_dim = spec.hidden_size, spec.hidden_size // spec.heads * spec.kv_heads
    shapes = {
        "self_attn.q_proj": (h, h),
        "self_attn.k_proj": (h, kv_dim),
        "self_attn.v_proj": (h, kv_dim),
        "self_attn.o_proj": (h, h),
        "mlp.gate_proj": (h, spec.intermediate_size),
        "mlp.up_proj": (h, spec.intermediate_size),
        "mlp.down_proj": (spec.intermediate_size, h),
    }
    modules = {
        f"base_model.model.model.language_model.layers.{i}.{name}": dims
        for i in range(spec.layers)
        for name, dims in shapes.items()
    }
    modules["base_model.model.multi_vector_projector"] = (h, spec.multivector_dim)
    tensors = {}
    for task in spec.tasks:
        for module, (fan_in, fan_out) in modules.items():
            a = torch.randn(spec.lora_rank, fan_in, generator=generator) / fan_in**0.5
            b = spec.init_std * torch.randn(fan_out, spec.lora_rank, generator=generator)
            tensors[f"{module}.lora_A.{task}.weight"] = a.to(torch.bfloat16)
            tensors[f"{module}.lora_B.{task}.weight"] = b.to(torch.bfloat16)
    save_file(tensors, str(folder / "adapters" / "adapter_model.safetensors"), metadata={"format": "pt"})
    targets = "|".join(LORA_TARGETS)
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "FEATURE_EXTRACTION",
        "base_model_name_or_path": "visdoc/random-tiny",
        "r": spec.lora_rank,
        "lora_alpha": spec.lora_alpha,
        "lora_dropout": 0.1,
        "bias": "none",
        "target_modules": f"(.*(model).*({targets}).*$|.*(single_vector_projector|multi_vector_projector).*$)",
        "exclude_modules": ".*visual.*",
        "inference_mode": True,
        "fan_in_fan_out": False,
        "use_dora": False,
        "use_rslora": False,
    }
    (folder / "adapters" / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
