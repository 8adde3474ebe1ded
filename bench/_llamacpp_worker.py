"""llama.cpp side of bench/llm_engine.py, run with the llama-cpp-python venv's interpreter.

Reads one JSON job on stdin, prints one JSON result on stdout (llama.cpp's
own logging goes to stderr). It drives llama.cpp through llama-cpp-python's
low-level bindings (llama_decode on hand-built batches), not the
high-level ``Llama`` class, so that the timed loop is the same shape as the
other engines': greedy argmax on the returned logits, EOS ignored, and
batch-8 decoding as eight sequences in one llama_batch.

Job fields: gguf, threads, n_ctx_per_seq, n_seq_max, n_batch, flash_attn
(-1 auto, 0 off, 1 on), warmup_prompt, prefill_prompts (one per run),
ttft_prompts (one per run), decode_prompts (one per run), new_tokens,
batch_prompts (one list of prompts per run).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def _load(job: dict):
    """Model and context with room for ``n_seq_max`` sequences of ``n_ctx_per_seq`` tokens each."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(job["gguf"].encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {job['gguf']}")
    cp = llama_cpp.llama_context_default_params()
    cp.n_seq_max = job["n_seq_max"]
    cp.n_ctx = job["n_ctx_per_seq"] * job["n_seq_max"]
    cp.n_batch = job["n_batch"]
    cp.n_ubatch = min(job["n_batch"], 512)
    cp.n_threads = job["threads"]
    cp.n_threads_batch = job["threads"]
    cp.flash_attn_type = job.get("flash_attn", -1)
    cp.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError("llama.cpp could not create a context")
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    return llama_cpp, model, ctx, n_vocab


class Runner:
    """One context; sequences are decoded with explicit positions and seq ids."""

    def __init__(self, job: dict):
        self.llama_cpp, self.model, self.ctx, self.n_vocab = _load(job)
        self.cap = max(job["n_batch"], job["n_seq_max"])
        self.batch = self.llama_cpp.llama_batch_init(self.cap, 0, job["n_seq_max"])
        self.n_batch = job["n_batch"]

    def clear(self) -> None:
        """Forget every sequence's cache."""
        self.llama_cpp.llama_memory_clear(self.llama_cpp.llama_get_memory(self.ctx), True)

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """Decode (token, pos, seq, wants_logits) entries as one batch."""
        b = self.batch
        for i, (tok, pos, seq, out) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if out else 0
        b.n_tokens = len(items)
        rc = self.llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _argmax(self, i: int) -> int:
        ptr = self.llama_cpp.llama_get_logits_ith(self.ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))

    def prefill(self, seq: int, ids: list[int]) -> int:
        """Prefill one sequence in n_batch pieces; the greedy next token."""
        for start in range(0, len(ids), self.n_batch):
            part = ids[start:start + self.n_batch]
            last = start + len(part) >= len(ids)
            self._decode([(t, start + j, seq, last and j == len(part) - 1) for j, t in enumerate(part)])
        return self._argmax(-1)

    def decode(self, feed: dict[int, tuple[int, int]], steps: int) -> None:
        """``steps`` greedy decode steps for all sequences at once; feed maps seq -> (token, pos)."""
        seqs = sorted(feed)
        for _ in range(steps):
            self._decode([(feed[s][0], feed[s][1], s, True) for s in seqs])
            for i, s in enumerate(seqs):
                feed[s] = (self._argmax(i), feed[s][1] + 1)


def run(job: dict) -> dict:
    """All measurements of one job; timings in seconds, rates in tokens/s."""
    r = Runner(job)
    n_new = job["new_tokens"]
    # warm-up: a short prefill and a few decode steps
    r.clear()
    w = job["warmup_prompt"]
    r.decode({0: (r.prefill(0, w), len(w))}, 4)

    res: dict = {"prefill_tok_s": [], "ttft_s": [], "decode_b1_tok_s": [], "decode_batch_tok_s": []}
    for ids in job["prefill_prompts"]:
        r.clear()
        t0 = time.perf_counter()
        r.prefill(0, ids)
        res["prefill_tok_s"].append(len(ids) / (time.perf_counter() - t0))
    for ids in job["ttft_prompts"]:
        r.clear()
        t0 = time.perf_counter()
        r.prefill(0, ids)
        res["ttft_s"].append(time.perf_counter() - t0)
    for ids in job["decode_prompts"]:
        r.clear()
        first = r.prefill(0, ids)
        t0 = time.perf_counter()
        r.decode({0: (first, len(ids))}, n_new)
        res["decode_b1_tok_s"].append(n_new / (time.perf_counter() - t0))
    for prompts in job["batch_prompts"]:
        r.clear()
        feed = {s: (r.prefill(s, ids), len(ids)) for s, ids in enumerate(prompts)}
        t0 = time.perf_counter()
        r.decode(feed, n_new)
        res["decode_batch_tok_s"].append(len(prompts) * n_new / (time.perf_counter() - t0))
    import llama_cpp

    res["llama_cpp_python"] = llama_cpp.__version__
    res["system_info"] = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    return res


def main() -> None:
    job = json.loads(sys.stdin.read())
    out = run(job)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
