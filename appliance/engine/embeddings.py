"""Sentence embeddings from the store's ONNX encoder: tokenize, run, mean-pool, normalise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from appliance.engine.cpu_ort import session_options
from appliance.store.manifest import EmbeddingsEngineConfig


class OrtEmbedder:
    def __init__(self, model_dir: Path, cfg: EmbeddingsEngineConfig, tokenizer_file: str = "tokenizer.json",
                 threads: int | None = None, optimized: bool = True):
        self.cfg = cfg
        so = session_options(threads if threads is not None else cfg.threads)
        if not optimized:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_dir / cfg.filename), so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tok = Tokenizer.from_file(str(model_dir / tokenizer_file))
        self.tok.enable_truncation(cfg.max_tokens)
        self.tok.no_padding()
        self._counter = Tokenizer.from_file(str(model_dir / tokenizer_file))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._wrap = self._special_wrapping()

    def _special_wrapping(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts around a text (BERT's [CLS] ... [SEP]), found by probing."""
        bare = self._counter.encode("probe", add_special_tokens=False).ids
        full = self._counter.encode("probe").ids
        for i in range(len(full) - len(bare) + 1):
            if full[i:i + len(bare)] == bare:
                return full[:i], full[i + len(bare):]
        return [], []

    def wrap_ids(self, ids: list[int]) -> list[int]:
        """Token ids as a client tokenized them (no special tokens) with the model's special tokens around them."""
        head, tail = self._wrap
        if head and ids[:len(head)] == head:
            return ids
        return head + ids + tail

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Untruncated lengths, so the API can refuse an input instead of silently cutting it."""
        return [len(e.ids) for e in self._counter.encode_batch(texts)]

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Embeddings for ``texts`` (one row each) and the number of tokens used."""
        return self.embed_ids([e.ids for e in self.tok.encode_batch(texts)])

    def embed_ids(self, inputs: list[list[int]]) -> tuple[np.ndarray, int]:
        """Embeddings for inputs already tokenized with this model's tokenizer, as given (special tokens too)."""
        out, used = [], 0
        for start in range(0, len(inputs), self.cfg.max_batch):
            batch = inputs[start:start + self.cfg.max_batch]
            width = max(len(e) for e in batch)
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, e in enumerate(batch):
                ids[row, : len(e)] = e
                mask[row, : len(e)] = 1
                used += len(e)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            if self.cfg.normalize:
                pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.append(pooled.astype(np.float32))
        return np.concatenate(out), used
