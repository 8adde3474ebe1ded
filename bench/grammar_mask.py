"""Grammar-mask cost per token at batch 1 and 16, on the store's chat model vocabulary (no engine involved).

What is measured: B sequences (``--batches``, default 1,16) each follow
the same JSON-schema grammar (serve_load's BENCH_SCHEMA) through a valid
document of it, token by token, exactly as the scheduler drives them.
Per step: the time to compute all B masks in one ``MaskBatch`` call (what
the scheduler runs beside the engine step where a core is free), the time
to compute them one by one on the calling thread (what it does where the
engine takes every core), the time to turn each
mask into a boolean row and apply it to a 49k-logit row with the sampler
(on the critical path, per sequence), and the time to advance each
matcher by its token (also on the critical path). Reported per token:
median and p90 over the document's steps, after ``--warmup`` passes.
The documents are the model's own tokenization of JSON texts, so the
lexer sees real BPE tokens; each is checked to be fully accepted first.

Results: bench/results/grammar_mask-<UTC date>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import find_chat_model, machine_info, percentile, print_table, utc_now, write_result  # noqa: E402
from serve_load import BENCH_SCHEMA  # noqa: E402

from appliance.engine.grammar import Grammars, MaskBatch  # noqa: E402
from appliance.engine.sampling import Sampler, SamplingParams  # noqa: E402
from appliance.engine.tokenizer import ChatTokenizer  # noqa: E402

DOCUMENTS = [
    {"title": "The Lantern of the Valley", "characters": [{"name": "Mira", "age": 12, "role": "hero"},
                                                          {"name": "Old Tomas", "age": 71, "role": "friend"},
                                                          {"name": "Grell", "age": 40, "role": "villain"}],
     "story": "Mira found a lantern in the reeds one morning. It glowed whenever someone nearby told the truth, "
              "and dimmed when they lied. Old Tomas laughed when she showed him, until it went dark in his hands."},
    {"title": "Harbor Lights", "characters": [{"name": "Jun", "age": 30, "role": "hero"}],
     "story": "The ships came in late that winter, and Jun counted every one of them from the harbor wall."},
]


def documents(tokenizer: ChatTokenizer, eos: int, n: int) -> list[list[int]]:
    """n token sequences of valid documents (Python's json layout, as the grammar writes it), then EOS."""
    docs = [tokenizer.encode(json.dumps(d)) + [eos] for d in DOCUMENTS]
    return [docs[i % len(docs)] for i in range(n)]


def one_pass(grammars: Grammars, masks: MaskBatch, docs: list[list[int]], vocab: int) -> dict[str, list[float]]:
    grammar = grammars.json_schema(BENCH_SCHEMA)
    constraints = [grammar.start() for _ in docs]
    samplers = [Sampler(SamplingParams(temperature=0.0)) for _ in docs]
    logits = np.random.default_rng(0).normal(size=vocab).astype(np.float32)
    compute, here, apply, advance = [], [], [], []
    for pos in range(max(len(d) for d in docs)):
        live = [i for i, d in enumerate(docs) if pos < len(d)]
        compute.append(masks.start([constraints[i] for i in live]).result() / len(live))
        here.append(MaskBatch.fill_here([constraints[i] for i in live]) / len(live))
        t0 = time.perf_counter()
        for i in live:
            samplers[i].choose(logits, constraints[i].allowed())
        apply.append((time.perf_counter() - t0) / len(live))
        t0 = time.perf_counter()
        for i in live:
            if not constraints[i].accept(docs[i][pos]):
                raise SystemExit(f"the grammar refused token {pos} of a document: {constraints[i].error}")
        advance.append((time.perf_counter() - t0) / len(live))
    return {"compute_per_seq_s": compute, "compute_in_place_per_seq_s": here, "apply_per_seq_s": apply,
            "advance_per_seq_s": advance}


def summary(samples: list[float]) -> dict:
    return {"median_us": round(statistics.median(samples) * 1e6, 2), "p90_us": round(percentile(samples, 90) * 1e6, 2),
            "max_us": round(max(samples) * 1e6, 2), "n": len(samples)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    model_dir, manifest = find_chat_model(args.store, args.model)
    cfg = manifest.engine
    tokenizer = ChatTokenizer(model_dir / manifest.tokenizer, manifest.chat_template)
    t0 = time.perf_counter()
    grammars = Grammars(tokenizer.tok.to_str(), cfg.vocab_size, cfg.eos_token_ids)
    vocab_build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    grammars.json_schema(BENCH_SCHEMA)
    compile_s = time.perf_counter() - t0
    masks = MaskBatch()
    results = {}
    rows = [["batch", "batched compute/seq med", "p90", "in place/seq med", "apply/seq med", "advance/seq med"]]
    for b in [int(x) for x in args.batches.split(",")]:
        docs = documents(tokenizer, cfg.eos_token_ids[0], b)
        for _ in range(args.warmup):
            one_pass(grammars, masks, docs, cfg.vocab_size)
        merged: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for k, v in one_pass(grammars, masks, docs, cfg.vocab_size).items():
                merged.setdefault(k, []).extend(v)
        results[str(b)] = {k.removesuffix("_s"): summary(v) for k, v in merged.items()}
        r = results[str(b)]
        rows.append([b, f"{r['compute_per_seq']['median_us']} us", f"{r['compute_per_seq']['p90_us']} us",
                     f"{r['compute_in_place_per_seq']['median_us']} us", f"{r['apply_per_seq']['median_us']} us",
                     f"{r['advance_per_seq']['median_us']} us"])
    masks.close()
    out = {"benchmark": "grammar_mask", "started_at": utc_now().isoformat(timespec="seconds"),
           "machine": machine_info(),
           "parameters": {"model": manifest.model_id, "vocab_size": cfg.vocab_size, "schema": BENCH_SCHEMA,
                          "document_tokens": [len(d) for d in
                                              documents(tokenizer, cfg.eos_token_ids[0], len(DOCUMENTS))],
                          "repeats": args.repeats, "warmup": args.warmup},
           "vocabulary_build_s": round(vocab_build_s, 3), "schema_compile_s": round(compile_s, 5),
           "per_token": results}
    path = write_result("grammar_mask", out, args.out)
    print_table(rows)
    print(f"vocabulary {vocab_build_s:.2f} s once per model; schema compile {compile_s * 1e3:.2f} ms")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
