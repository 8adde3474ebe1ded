"""Decoder LLM -> ONNX with a KV cache, through onnxruntime-genai's model builder.

The builder emits GroupQueryAttention with rotary embedding fused and past
and present sharing one buffer, so the box updates its KV cache in place,
batches sequences of different lengths by ``seqlens_k`` and prefills in
chunks (see docs/exporter-choice.md for why this exporter).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from appliance.errors import ApplianceError

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"


def build_onnx(hf_dir: Path, out: Path, log: Path, cache: Path) -> Path:
    """Run the model builder at fp32 for the CPU provider; the tuning stage quantizes afterwards."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out),
           "-p", "fp32", "-e", "cpu", "-c", str(cache)]
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not (out / MODEL_FILE).is_file():
        raise ApplianceError(f"ONNX export of {hf_dir} failed (exit {proc.returncode}); see {log}")
    keep_last_logits_only(out / MODEL_FILE)
    return out / MODEL_FILE


def keep_last_logits_only(path: Path) -> None:
    """Slice hidden states to the last position before the LM head.

    A prefill chunk only needs the next-token logits; computing the vocab
    projection for every position costs about a fifth of prefill for a
    small model and a [chunk, vocab] output.
    """
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    head = next((n for n in graph.node if n.op_type == "MatMul" and n.output[0] == "logits"), None)
    if head is None:
        head = next((n for n in graph.node if "lm_head" in n.name and n.op_type in ("MatMul", "MatMulNBits")), None)
    if head is None:
        raise ApplianceError(f"{path}: no LM head MatMul found; the export layout changed")
    if any(n.name == "/lm_head/last_position" for n in graph.node):
        return
    hidden = head.input[0]
    sliced = hidden + "/last_position"
    graph.initializer.extend([
        onnx.numpy_helper.from_array(np.array([-1], np.int64), "/lm_head/last_position/starts"),
        onnx.numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "/lm_head/last_position/ends"),
        onnx.numpy_helper.from_array(np.array([1], np.int64), "/lm_head/last_position/axes"),
    ])
    node = helper.make_node(
        "Slice",
        [hidden, "/lm_head/last_position/starts", "/lm_head/last_position/ends", "/lm_head/last_position/axes"],
        [sliced],
        name="/lm_head/last_position",
    )
    idx = list(graph.node).index(head)
    graph.node.insert(idx, node)
    head.input[0] = sliced
    for o in graph.output:
        if o.name == "logits":
            dims = o.type.tensor_type.shape.dim
            dims[1].ClearField("dim_param")
            dims[1].dim_value = 1
    onnx.save(model, str(path))


def read_decoder_shape(hf_dir: Path) -> dict:
    cfg = json.loads((hf_dir / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    eos = cfg.get("eos_token_id")
    return {
        "num_layers": cfg["num_hidden_layers"],
        "num_kv_heads": cfg.get("num_key_value_heads", heads),
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // heads,
        "vocab_size": cfg["vocab_size"],
        "eos_token_ids": eos if isinstance(eos, list) else [eos],
        "bos_token_id": cfg.get("bos_token_id"),
    }


