"""The ``cpu-ort`` backend: the store's ONNX decoder on onnxruntime's CPU provider.

The decoder uses GroupQueryAttention with past and present sharing one
buffer, so binding a slot's cache view as both input and output makes the
step write new keys and values in place: nothing is copied per token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from appliance.engine.base import CacheStats, StepInput
from appliance.engine.kv_cache import SlotKvCache
from appliance.sku.detect import physical_cores
from appliance.store.manifest import LlmEngineConfig


def session_options(threads: int, spinning: bool = True) -> ort.SessionOptions:
    """Engines in the store are already optimised at build time; don't redo it at box start."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads or physical_cores()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return so


class CpuOrtLlm:
    def __init__(self, model_dir: Path, cfg: LlmEngineConfig, max_batch: int | None = None,
                 context_length: int | None = None, threads: int | None = None,
                 optimized: bool = True):
        self.cfg = cfg
        self.max_batch = max_batch or cfg.max_batch
        self.context_length = context_length or cfg.context_length
        self.vocab_size = cfg.vocab_size
        self.eos_token_ids = list(cfg.eos_token_ids)
        so = session_options(threads if threads is not None else cfg.threads)
        if not optimized:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_dir / cfg.filename), so, providers=["CPUExecutionProvider"])
        dtype = np.float16 if cfg.kv_dtype == "fp16" else np.float32
        self.cache = SlotKvCache(cfg.num_layers, self.max_batch, cfg.num_kv_heads, self.context_length,
                                 cfg.head_dim, dtype)
        self._names = [
            (cfg.past_key % i, cfg.present_key % i, cfg.past_value % i, cfg.present_value % i)
            for i in range(cfg.num_layers)
        ]
        self._views: dict[tuple[int, int], list[tuple[ort.OrtValue, ort.OrtValue]]] = {}

    # -- binding -------------------------------------------------------------------------------
    def _cache_views(self, start: int, count: int) -> list[tuple[ort.OrtValue, ort.OrtValue]]:
        """OrtValues over slots [start, start+count) of every layer; made once per shape and reused."""
        key = (start, count)
        views = self._views.get(key)
        if views is None:
            views = [
                (ort.OrtValue.ortvalue_from_numpy(k[start:start + count]),
                 ort.OrtValue.ortvalue_from_numpy(v[start:start + count]))
                for k, v in zip(self.cache.keys, self.cache.values)
            ]
            self._views[key] = views
        return views

    def _run(self, start: int, input_ids: np.ndarray, past_lens: list[int]) -> np.ndarray:
        count, width = input_ids.shape
        total = max(past_lens) + width
        mask = np.zeros((count, total), np.int64)
        for row, p in enumerate(past_lens):
            mask[row, : p + width] = 1
        io = self.session.io_binding()
        io.bind_cpu_input("input_ids", input_ids)
        io.bind_cpu_input("attention_mask", mask)
        for (pk, ck, pv, cv), (kv, vv) in zip(self._names, self._cache_views(start, count)):
            io.bind_ortvalue_input(pk, kv)
            io.bind_ortvalue_output(ck, kv)
            io.bind_ortvalue_input(pv, vv)
            io.bind_ortvalue_output(cv, vv)
        io.bind_output("logits")
        self.session.run_with_iobinding(io)
        logits = io.get_outputs()[-1].numpy()
        return logits[:, -1, :]

    # -- the engine interface ------------------------------------------------------------------
    def admit(self, seq_id: int, prompt: list[int]) -> int:
        if len(prompt) > self.context_length:
            raise ValueError(f"prompt of {len(prompt)} tokens exceeds the context of {self.context_length}")
        return self.cache.admit(seq_id, prompt)

    def step(self, work: StepInput) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        cache = self.cache
        if work.decode:
            order = cache.decoding_order()
            if set(order) != set(work.decode):
                raise ValueError("a decode step must include every decoding sequence")
            lens = [len(cache.slots[i].tokens) for i in range(len(order))]
            if max(lens) + 1 > self.context_length:
                raise ValueError("a decoding sequence reached the end of its context")
            ids = np.array([[work.decode[s]] for s in order], np.int64)
            logits = self._run(0, ids, lens)
            for row, s in enumerate(order):
                cache.slots[row].tokens.append(work.decode[s])
                out[s] = logits[row]
        for chunk in work.prefill:
            slot = cache.slot_of(chunk.seq_id)
            past = len(cache.slots[slot].tokens)
            if past + len(chunk.tokens) > self.context_length:
                raise ValueError("prefill past the end of the context")
            logits = self._run(slot, np.array([chunk.tokens], np.int64), [past])
            cache.slots[slot].tokens.extend(chunk.tokens)
            if chunk.last:
                out[chunk.seq_id] = logits[0]
                cache.start_decoding(chunk.seq_id)
        return out

    def release(self, seq_id: int) -> None:
        self.cache.release(seq_id)

    def idle(self) -> bool:
        return self.cache.warm_next()

    def cached_len(self, seq_id: int) -> int:
        return len(self.cache.slots[self.cache.slot_of(seq_id)].tokens)

    def cache_stats(self) -> CacheStats:
        return self.cache.stats()
