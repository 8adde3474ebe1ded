"""Sentence-embedding encoder (BERT family) -> ONNX with torch.onnx's dynamo exporter."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from appliance.errors import ApplianceError


def read_pooling(hf_dir: Path) -> tuple[str, bool]:
    """Pooling and normalisation from the sentence-transformers files, if present."""
    pooling, normalize = "mean", False
    cfg = hf_dir / "1_Pooling" / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        pooling = "cls" if data.get("pooling_mode_cls_token") else "mean"
    modules = hf_dir / "modules.json"
    if modules.is_file():
        normalize = any("Normalize" in m.get("type", "") for m in json.loads(modules.read_text()))
    return pooling, normalize


def export_encoder(hf_dir: Path, out: Path) -> tuple[Path, int]:
    """Export the encoder's last hidden state with dynamic batch and sequence; returns (path, dims)."""
    import torch
    from transformers import AutoModel

    out.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(hf_dir, dtype=torch.float32).eval()

    class Encoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    ids = torch.ones((2, 16), dtype=torch.int64)
    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("sequence", min=1, max=4096)
    path = out / "model.onnx"
    try:
        program = torch.onnx.export(
            Encoder(model).eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}, {0: batch, 1: seq}),
            dynamo=True, optimize=True, verbose=False,
        )
        program.save(str(path), external_data=True)
    except Exception as exc:
        raise ApplianceError(f"ONNX export of the encoder in {hf_dir} failed: {type(exc).__name__}: {exc}") from None
    for name in ("tokenizer.json",):
        shutil.copy(hf_dir / name, out / name)
    return path, int(model.config.hidden_size)
