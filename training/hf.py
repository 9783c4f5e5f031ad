"""Hugging Face interop: our GPT <-> the `GPT2LMHeadModel` layout (config.json + model.safetensors).

The parameter names are GPT-2's own (nanoGPT kept them); the only difference is that GPT-2's
checkpoints store the four projection matrices as Conv1D weights, (in, out), where nn.Linear holds
(out, in), so those are transposed both ways. The output embedding is tied to `wte` and not stored.
Import also takes OpenAI-style files whose keys lack the `transformer.` prefix.
"""

from __future__ import annotations

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from training.checkpoint import model_from_checkpoint, save_checkpoint, weights_checkpoint
from training.model import GPT, GPTConfig
from webtext.core import storage
from webtext.core.stage import InputError

CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def hf_config(config: GPTConfig) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def save_hf(model: GPT, out) -> None:
    tensors = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            continue
        tensors[key] = (value.t() if key.endswith(CONV1D) else value).detach().cpu().contiguous()
    storage.write_json(storage.join(out, "config.json"), hf_config(model.config))
    storage.write_bytes(storage.join(out, "model.safetensors"), save_safetensors(tensors, metadata={"format": "pt"}))


def load_hf(location) -> GPT:
    """A GPT from a GPT2LMHeadModel folder (config.json + model.safetensors)."""
    config_path, weights_path = storage.join(location, "config.json"), storage.join(location, "model.safetensors")
    config = storage.read_json(config_path)
    if config.get("model_type") != "gpt2" or config.get("activation_function", "gelu_new") != "gelu_new":
        raise InputError(
            f"{config_path}: not a GPT-2 model (model_type {config.get('model_type')!r}, "
            f"activation {config.get('activation_function')!r})"
        )
    if config.get("n_inner") not in (None, 4 * config["n_embd"]):
        raise InputError(f"{config_path}: n_inner {config['n_inner']} is not 4 x n_embd, which this GPT assumes")
    model = GPT(
        GPTConfig(
            block_size=config["n_positions"],
            vocab_size=config["vocab_size"],
            n_layer=config["n_layer"],
            n_head=config["n_head"],
            n_embd=config["n_embd"],
        )
    )
    state = {}
    for key, value in load_safetensors(storage.read_bytes(weights_path)).items():
        if key.endswith((".attn.bias", ".attn.masked_bias")) or key == "lm_head.weight":
            continue  # causal-mask buffers of old checkpoints; the tied output embedding
        key = key if key.startswith("transformer.") else f"transformer.{key}"
        state[key] = value.t() if key.endswith(CONV1D) else value
    state["lm_head.weight"] = state["transformer.wte.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"{weights_path}: missing {missing[:3]}, unexpected {unexpected[:3]} parameter(s)")
    return model


def export_hf(checkpoint, out) -> None:
    save_hf(model_from_checkpoint(checkpoint), out)


def import_hf(location, out) -> None:
    """A webtext checkpoint (weights and model shape, no optimizer) from a Hugging Face GPT-2 folder."""
    save_checkpoint(out, weights_checkpoint(load_hf(location)))
