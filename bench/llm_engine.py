"""LLM engine speed on one CPU box: the store's cpu-ort engine against transformers and llama.cpp.

What is measured, on the same machine in the same run, with the same
thread count and the same prompt token ids for every engine:

* prefill tokens/s on a ``--prefill-tokens`` (512) token prompt;
* time to first token for a ``--prompt-tokens`` (100) token prompt: prompt
  ids in, greedy first token out (tokenization is not timed);
* decode tokens/s at batch 1: ``--new-tokens`` (128) greedy steps after
  that prompt, EOS ignored (argmax fed back whatever it is);
* aggregate decode tokens/s at batch ``--batch`` (8): that many different
  prompts decoded together, ``--new-tokens`` steps each.

Engines:

* ours: ``CpuOrtLlm`` on the store's engine (``manifest.engine``), driven
  directly as the factory's greedy helper does (``prefill_all`` in the
  manifest's ``prefill_chunk``, then one decode step per token);
* transformers: eager PyTorch fp32 on the plain HF folder the factory
  makes from the same GGUF (``gguf_to_hf``), ``attn_implementation``
  ``--hf-attn``, logits only for the last position, batches left-padded;
* llama.cpp: the same GGUF through llama-cpp-python's low-level bindings in
  its own venv (bench/_llamacpp_worker.py), and ``llama-bench -p P -n N``
  for pp/tg as llama.cpp itself reports them (llama-bench's tg runs at
  context depth 0). ``llama-batched-bench`` is used for batch decoding
  only if that binary exists; the worker's batched llama_decode is always
  recorded. The binaries, the libraries and the binding's venv are built once
  by bench/llamacpp_build.py (pinned sdist, explicit CPU flags) unless
  ``--llama-bin`` and ``--llama-python`` name others.

Each figure is the median of ``--runs`` runs (3; ``--quick`` makes it 1)
after one discarded warm-up run of the same shape, and every run uses fresh
random prompt ids so that no engine can reuse a cached prefix. The GGUF is found as the factory finds
it: the spec's source through ``resolve_source`` (a cached local path).

The memory-bandwidth bound: bytes of weights a decode step reads (every
initializer of the engine's ONNX graph, summed by the node that consumes
it, except that the embedding table and the rotary caches count one row),
and the machine's read bandwidth (numpy summing a ``--bw-gib`` float32
array, best of several, on one thread and on ``--threads`` threads). The
ceiling is bandwidth / bytes-per-step tokens/s at batch 1; ours is reported
as a fraction of it. KV-cache reads are reported separately.

Results: bench/results/llm_engine-<UTC date>.json (machine, parameters,
raw samples, medians, ratios ours/transformers and ours/llama.cpp).
Run it on a quiet machine; see ``--help``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (REPO, find_chat_model, fmt, llama_anchor, machine_info, physical_cores,  # noqa: E402
                     print_table, ratio, resolve_gguf, stat, utc_now, write_result)
from llamacpp_build import DEFAULT_CACHE  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_llamacpp_worker.py"


# -- inputs --------------------------------------------------------------------------------------

def make_prompts(vocab: int, args) -> dict:
    """Random prompt ids, different for every run and engine-independent, so no prefix is reused."""
    rng = np.random.default_rng(args.seed)
    lo, hi = 256, vocab - 1  # clear of the special tokens at the start of the vocabulary

    def ids(n: int) -> list[int]:
        return rng.integers(lo, hi, size=n).tolist()

    n = args.runs + 1  # the first run of each measurement is a discarded warm-up
    return {
        "warmup": ids(32),
        "prefill": [ids(args.prefill_tokens) for _ in range(n)],
        "ttft": [ids(args.prompt_tokens) for _ in range(n)],
        "decode": [ids(args.prompt_tokens) for _ in range(n)],
        "batch": [[ids(args.prompt_tokens) for _ in range(args.batch)] for _ in range(n)],
    }


def timed(samples: list[float]) -> dict:
    """Drop the warm-up run (the first sample) and summarise the rest."""
    return stat(samples[1:])


# -- ours ----------------------------------------------------------------------------------------

def bench_ours(model_dir: Path, manifest, prompts: dict, args) -> dict:
    """The store's CpuOrtLlm: prefill, TTFT, decode at batch 1 and at --batch."""
    from appliance.engine.base import StepInput
    from appliance.engine.cpu_ort import CpuOrtLlm
    from appliance.engine.greedy import prefill_all

    cfg = manifest.engine
    chunk = args.prefill_chunk or cfg.prefill_chunk
    max_batch = max(args.batch, cfg.max_batch)
    t0 = time.perf_counter()
    engine = CpuOrtLlm(model_dir, cfg, max_batch=max_batch, context_length=cfg.context_length, threads=args.threads)
    load_s = time.perf_counter() - t0
    while engine.idle():  # what the server's scheduler does while idle: fault the KV slots in
        pass
    sid = iter(range(1, 1 << 30))

    def prefill(seqs: dict[int, list[int]]) -> dict[int, np.ndarray]:
        before = engine.cache_stats().prefix_tokens_reused
        out = prefill_all(engine, seqs, chunk)
        if engine.cache_stats().prefix_tokens_reused != before:
            raise RuntimeError("the engine reused a cached prefix; the prompts must differ")
        return out

    def decode(feed: dict[int, int], steps: int) -> None:
        for _ in range(steps):
            out = engine.step(StepInput(decode=feed))
            feed = {s: int(np.argmax(lg)) for s, lg in out.items()}

    def release(seqs) -> None:
        for s in seqs:
            engine.release(s)

    # warm-up
    s = next(sid)
    first = prefill({s: prompts["warmup"]})
    decode({s: int(np.argmax(first[s]))}, 4)
    release([s])

    res = {"prefill_tok_s": [], "ttft_s": [], "decode_b1_tok_s": [], "decode_batch_tok_s": []}
    for ids in prompts["prefill"]:
        s = next(sid)
        t0 = time.perf_counter()
        prefill({s: ids})
        res["prefill_tok_s"].append(len(ids) / (time.perf_counter() - t0))
        release([s])
    for ids in prompts["ttft"]:
        s = next(sid)
        t0 = time.perf_counter()
        int(np.argmax(prefill({s: ids})[s]))
        res["ttft_s"].append(time.perf_counter() - t0)
        release([s])
    for ids in prompts["decode"]:
        s = next(sid)
        tok = int(np.argmax(prefill({s: ids})[s]))
        t0 = time.perf_counter()
        decode({s: tok}, args.new_tokens)
        res["decode_b1_tok_s"].append(args.new_tokens / (time.perf_counter() - t0))
        release([s])
    for batch in prompts["batch"]:
        seqs = {next(sid): ids for ids in batch}
        first = prefill(seqs)
        feed = {s: int(np.argmax(lg)) for s, lg in first.items()}
        t0 = time.perf_counter()
        decode(feed, args.new_tokens)
        res["decode_batch_tok_s"].append(len(seqs) * args.new_tokens / (time.perf_counter() - t0))
        release(seqs)
    del engine
    gc.collect()
    out = {k: timed(v) for k, v in res.items()}
    out["config"] = {"prefill_chunk": chunk, "max_batch": max_batch, "context_length": cfg.context_length,
                     "kv_dtype": cfg.kv_dtype, "threads": args.threads, "load_s": round(load_s, 3),
                     "precision": manifest.precision, "backend": manifest.backend}
    return out


# -- transformers --------------------------------------------------------------------------------

def bench_transformers(hf_dir: Path, prompts: dict, args) -> dict:
    """Eager fp32 transformers on the dequantized HF folder, with a hand-written greedy loop."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation=args.hf_attn)
    model.eval()
    load_s = time.perf_counter() - t0

    def left_pad(batch: list[list[int]]):
        width = max(len(p) for p in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids, mask, pos

    def forward(ids, mask, pos, past=None):
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=past,
                    use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :], out.past_key_values

    def prefill(batch):
        ids, mask, pos = left_pad(batch)
        logits, past = forward(ids, mask, pos)
        return logits.argmax(-1, keepdim=True), past, mask, pos[:, -1:]

    def decode(tok, past, mask, pos, steps: int) -> None:
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype)], dim=1)
            pos = pos + 1
            logits, past = forward(tok, mask, pos, past)
            tok = logits.argmax(-1, keepdim=True)

    res = {"prefill_tok_s": [], "ttft_s": [], "decode_b1_tok_s": [], "decode_batch_tok_s": []}
    with torch.inference_mode():
        decode(*prefill([prompts["warmup"]]), 4)
        for ids in prompts["prefill"]:
            t0 = time.perf_counter()
            prefill([ids])
            res["prefill_tok_s"].append(len(ids) / (time.perf_counter() - t0))
        for ids in prompts["ttft"]:
            t0 = time.perf_counter()
            int(prefill([ids])[0][0, 0])
            res["ttft_s"].append(time.perf_counter() - t0)
        for ids in prompts["decode"]:
            state = prefill([ids])
            t0 = time.perf_counter()
            decode(*state, args.new_tokens)
            res["decode_b1_tok_s"].append(args.new_tokens / (time.perf_counter() - t0))
        for batch in prompts["batch"]:
            state = prefill(batch)
            t0 = time.perf_counter()
            decode(*state, args.new_tokens)
            res["decode_batch_tok_s"].append(len(batch) * args.new_tokens / (time.perf_counter() - t0))
    del model
    gc.collect()
    out = {k: timed(v) for k, v in res.items()}
    out["config"] = {"dtype": "float32", "attn_implementation": args.hf_attn, "threads": args.threads,
                     "torch_threads": torch.get_num_threads(), "load_s": round(load_s, 3)}
    return out


# -- llama.cpp -----------------------------------------------------------------------------------

def bench_llamacpp_python(gguf: Path, prompts: dict, args) -> dict:
    """The worker in llama-cpp-python's venv: same prompts, same greedy loop, batched llama_decode."""
    per_seq = max(args.prefill_tokens, args.prompt_tokens + args.new_tokens) + 64
    job = {"gguf": str(gguf), "threads": args.threads, "n_ctx_per_seq": -(-per_seq // 256) * 256,
           "n_seq_max": args.batch, "n_batch": 2048, "flash_attn": -1, "warmup_prompt": prompts["warmup"],
           "prefill_prompts": prompts["prefill"], "ttft_prompts": prompts["ttft"],
           "decode_prompts": prompts["decode"], "new_tokens": args.new_tokens, "batch_prompts": prompts["batch"]}
    proc = subprocess.run([str(args.llama_python), str(WORKER)], input=json.dumps(job), capture_output=True,
                          text=True, timeout=args.timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"llama.cpp worker failed (exit {proc.returncode}): {tail}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {k: timed(raw[k]) for k in ("prefill_tok_s", "ttft_s", "decode_b1_tok_s", "decode_batch_tok_s")}
    out["config"] = {"threads": args.threads, "n_ctx_per_seq": job["n_ctx_per_seq"], "n_seq_max": args.batch,
                     "n_batch": 2048, "n_ubatch": 512, "flash_attn": "auto", "kv_type": "f16",
                     "llama_cpp_python": raw.get("llama_cpp_python"), "system_info": raw.get("system_info")}
    return out


def bench_llama_bench(gguf: Path, args) -> dict:
    """``llama-bench -p P -n N -t T -r runs -o json``: pp and tg as llama.cpp reports them."""
    exe = Path(args.llama_bin) / "llama-bench"
    if not exe.exists():
        return {"not_measured": f"{exe} not found"}
    cmd = [str(exe), "-m", str(gguf), "-p", f"{args.prefill_tokens},{args.prompt_tokens}",
           "-n", str(args.new_tokens), "-t", str(args.threads), "-r", str(args.runs), "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"not_measured": f"llama-bench exit {proc.returncode}: {tail}", "command": cmd[1:]}
    rows = json.loads(proc.stdout)
    out: dict = {"command": ["llama-bench"] + cmd[1:]}
    for r in rows:
        if r.get("n_gen", 0) == 0 and r.get("n_prompt") == args.prefill_tokens:
            out["prefill_tok_s"] = stat(list(r.get("samples_ts", [r["avg_ts"]])))
        elif r.get("n_gen", 0) == 0 and r.get("n_prompt") == args.prompt_tokens:
            pp = stat(list(r.get("samples_ts", [r["avg_ts"]])))
            out["ttft_s_from_pp"] = stat([args.prompt_tokens / x for x in pp["samples"] if x])
        elif r.get("n_prompt", 0) == 0 and r.get("n_gen") == args.new_tokens:
            out["decode_b1_tok_s"] = stat(list(r.get("samples_ts", [r["avg_ts"]])))
        out["build"] = {k: r.get(k) for k in ("build_commit", "build_number", "cpu_info", "backends",
                                              "type_k", "flash_attn", "n_batch", "n_ubatch", "n_threads")}
    return out


def bench_batched_bench(gguf: Path, args) -> dict:
    """``llama-batched-bench`` aggregate decode at batch 1 and --batch, when that binary was built."""
    exe = Path(args.llama_bin) / "llama-batched-bench"
    if not exe.exists():
        return {"not_measured": "llama-batched-bench was not built; see llama_cpp_python.decode_batch_tok_s"}
    ctx = args.batch * (args.prompt_tokens + args.new_tokens) + 256
    cmd = [str(exe), "-m", str(gguf), "-c", str(ctx), "-b", "2048", "-ub", "512", "-npp", str(args.prompt_tokens),
           "-ntg", str(args.new_tokens), "-npl", f"1,{args.batch}", "-t", str(args.threads), "--output-format", "jsonl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"not_measured": f"llama-batched-bench exit {proc.returncode}", "command": cmd[1:]}
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    out: dict = {"command": ["llama-batched-bench"] + cmd[1:], "rows": rows}
    for r in rows:
        if r.get("pl") == args.batch:
            out["decode_batch_tok_s"] = stat([r["speed_tg"]])
        if r.get("pl") == 1:
            out["decode_b1_tok_s"] = stat([r["speed_tg"]])
    return out


# -- the bandwidth bound -------------------------------------------------------------------------

def weight_bytes_per_step(onnx_path: Path) -> dict:
    """Initializer bytes one decode step reads, by consuming op; embedding and rotary caches count one row."""
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}

    def size(t) -> int:
        ext = {e.key: e.value for e in t.external_data}
        if "length" in ext:
            return int(ext["length"])
        if t.raw_data:
            return len(t.raw_data)
        return int(np.prod(t.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize

    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                consumers.setdefault(name, set()).add(node.op_type)
    by_op: dict[str, int] = {}
    one_row: dict[str, int] = {}
    total = 0
    for name, ops in consumers.items():
        t = inits[name]
        full = size(t)
        if ops == {"Gather"} and len(t.dims) == 2 and t.dims[0] > 1000:  # the embedding table
            read = full // t.dims[0]
            one_row[name] = full
        elif ops == {"GroupQueryAttention"} and len(t.dims) == 2:  # cos/sin caches: one position
            read = full // t.dims[0]
            one_row[name] = full
        else:
            read = full
        key = "+".join(sorted(ops))
        by_op[key] = by_op.get(key, 0) + read
        total += read
    return {"bytes": total, "by_consumer_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "counted_one_row_of": {k: v for k, v in one_row.items()},
            "all_initializer_bytes": sum(size(t) for t in inits.values())}


def read_bandwidth(gib: float, threads: int, repeats: int) -> dict:
    """Best read GB/s summing a float32 array, on one thread and split across ``threads`` threads."""
    n = int(gib * 2**30) // 4
    arr = np.ones(n, dtype=np.float32)  # written once, so every page is resident
    nbytes = arr.nbytes

    def single() -> float:
        t0 = time.perf_counter()
        arr.sum()
        return nbytes / (time.perf_counter() - t0) / 1e9

    parts = np.array_split(arr, threads)

    def multi() -> float:
        barrier = threading.Barrier(threads + 1)

        def work(p):
            barrier.wait()
            p.sum()

        ts = [threading.Thread(target=work, args=(p,)) for p in parts]
        for t in ts:
            t.start()
        t0 = time.perf_counter()
        barrier.wait()
        for t in ts:
            t.join()
        return nbytes / (time.perf_counter() - t0) / 1e9

    one = [single() for _ in range(repeats)]
    many = [multi() for _ in range(repeats)] if threads > 1 else one
    del arr, parts
    gc.collect()
    return {"array_gib": gib, "repeats": repeats, "single_thread_gbps": [round(x, 3) for x in one],
            "threads": threads, "multi_thread_gbps": [round(x, 3) for x in many],
            "best_single_gbps": round(max(one), 3), "best_gbps": round(max(max(one), max(many)), 3)}


# -- main ----------------------------------------------------------------------------------------

METRICS = [("prefill_tok_s", "prefill tok/s", True), ("ttft_s", "TTFT s", False),
           ("decode_b1_tok_s", "decode b1 tok/s", True), ("decode_batch_tok_s", "decode bN tok/s", True)]


def med(block: dict | None, key: str):
    """Median of a metric in an engine block, or None."""
    if not block or key not in block or not isinstance(block[key], dict):
        return None
    return block[key].get("median")


def llama_reference(engines: dict, key: str):
    """The llama.cpp figure ratios use: llama-bench (or batched-bench) where it has it, else the worker's."""
    for name in ("llama_bench", "llama_batched_bench", "llama_cpp_python"):
        v = med(engines.get(name), key)
        if v is not None:
            return v, name
    return None, None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store", type=Path, required=True, help="model store built by the factory")
    p.add_argument("--model", default=None, help="chat model id in the store (default: the first chat model)")
    p.add_argument("--spec", type=Path, default=REPO / "appliance.toml", help="spec naming the model's source")
    p.add_argument("--threads", type=int, default=physical_cores(), help="threads for every engine")
    p.add_argument("--runs", type=int, default=3, help="timed runs per figure (median reported)")
    p.add_argument("--quick", action="store_true",
                   help="one run per figure, for a smoke test; committed results come from full runs")
    p.add_argument("--prefill-tokens", type=int, default=512)
    p.add_argument("--prompt-tokens", type=int, default=100, help="prompt for TTFT and decode")
    p.add_argument("--new-tokens", type=int, default=128, help="decode steps (EOS ignored)")
    p.add_argument("--batch", type=int, default=8, help="sequences in the batched decode")
    p.add_argument("--prefill-chunk", type=int, default=0, help="our prefill chunk (0: the manifest's)")
    p.add_argument("--engines", default="ours,transformers,llamacpp", help="comma list of engines to run")
    p.add_argument("--hf-attn", default="eager", choices=["eager", "sdpa"], help="transformers attention")
    p.add_argument("--llama-python", type=Path, default=None,
                   help="llama-cpp-python venv python (default: built by bench/llamacpp_build.py)")
    p.add_argument("--llama-bin", type=Path, default=None,
                   help="llama.cpp build/bin (default: built by bench/llamacpp_build.py)")
    p.add_argument("--llama-cache", type=Path, default=DEFAULT_CACHE, help="where llamacpp_build.py builds")
    p.add_argument("--bw-gib", type=float, default=1.0, help="array size for the bandwidth probe")
    p.add_argument("--bw-repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--timeout", type=int, default=3600, help="limit for each llama.cpp subprocess, seconds")
    p.add_argument("--out", type=Path, default=None, help="result file (default bench/results/llm_engine-DATE.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(args.engines) - {"ours", "transformers", "llamacpp"}
    if unknown:
        p.error(f"unknown engines {sorted(unknown)}; use ours, transformers, llamacpp")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if "llamacpp" in args.engines:
        llama_anchor(args, binding=True)
    started = utc_now()
    t_start = time.perf_counter()
    model_dir, manifest = find_chat_model(args.store.resolve(), args.model)
    src, cache = resolve_gguf(args.spec, manifest.model_id)
    if src.kind != "gguf":
        raise SystemExit(f"the source of {manifest.model_id} is not a GGUF ({src.path}); llama.cpp needs one")
    prompts = make_prompts(manifest.engine.vocab_size, args)
    print(f"model {manifest.model_id}: store {model_dir}, GGUF {src.path}; threads {args.threads}, "
          f"runs {args.runs}", flush=True)

    engines: dict = {}
    errors: dict = {}
    if "ours" in args.engines:
        print("ours (cpu-ort) ...", flush=True)
        engines["ours"] = bench_ours(model_dir, manifest, prompts, args)
    hf_dir = None
    if "transformers" in args.engines:
        from appliance.factory.sources import gguf_to_hf

        print("transformers ...", flush=True)
        hf_dir = gguf_to_hf(src, cache / "hf")
        try:
            engines["transformers"] = bench_transformers(hf_dir, prompts, args)
        except Exception as exc:  # keep the other engines' numbers
            errors["transformers"] = f"{type(exc).__name__}: {exc}"
    if "llamacpp" in args.engines:
        print("llama.cpp (llama-cpp-python worker, llama-bench) ...", flush=True)
        for name, fn in (("llama_cpp_python", lambda: bench_llamacpp_python(src.path, prompts, args)),
                         ("llama_bench", lambda: bench_llama_bench(src.path, args)),
                         ("llama_batched_bench", lambda: bench_batched_bench(src.path, args))):
            try:
                engines[name] = fn()
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"

    print("bandwidth ...", flush=True)
    weights = weight_bytes_per_step(model_dir / manifest.engine.filename)
    bw = read_bandwidth(args.bw_gib, args.threads, args.bw_repeats)
    cfg = manifest.engine
    kv_per_token = cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * (2 if cfg.kv_dtype == "fp16" else 4)
    mean_ctx = args.prompt_tokens + args.new_tokens / 2
    ceiling = bw["best_gbps"] * 1e9 / weights["bytes"]
    ceiling_kv = bw["best_gbps"] * 1e9 / (weights["bytes"] + kv_per_token * mean_ctx)
    ours_b1 = med(engines.get("ours"), "decode_b1_tok_s")
    bound = {
        "weight_bytes_per_decode_step": weights, "read_bandwidth": bw,
        "ceiling_tok_s_b1": round(ceiling, 2),
        "kv_bytes_per_context_token": kv_per_token, "mean_decode_context": mean_ctx,
        "ceiling_tok_s_b1_with_kv": round(ceiling_kv, 2),
        "ours_b1_fraction_of_ceiling": ratio(ours_b1, ceiling),
        "ours_b1_fraction_of_ceiling_with_kv": ratio(ours_b1, ceiling_kv),
    }

    ratios: dict = {"note": "ours / other for each metric; for ttft_s lower is better, so < 1 means ours is faster"}
    for key, _, _ in METRICS:
        ours = med(engines.get("ours"), key)
        ref, ref_name = llama_reference(engines, key)
        ratios[key] = {"ours_over_transformers": ratio(ours, med(engines.get("transformers"), key)),
                       "ours_over_llama_cpp": ratio(ours, ref), "llama_cpp_reference": ref_name,
                       "ours_over_llama_cpp_python": ratio(ours, med(engines.get("llama_cpp_python"), key))}

    result = {
        "benchmark": "llm_engine",
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "machine": machine_info(args.llama_python, args.llama_bin),
        "parameters": {
            "threads": args.threads, "quick": args.quick, "runs": args.runs,
            "warmup_runs": "1 discarded run per measurement", "prefill_tokens": args.prefill_tokens,
            "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "batch": args.batch,
            "engines": args.engines, "hf_attn": args.hf_attn, "seed": args.seed, "bw_gib": args.bw_gib,
            "bw_repeats": args.bw_repeats, "prompt_ids": "uniform random in [256, vocab-1), fresh per run",
            "eos": "ignored (greedy argmax fed back)", "timed": {
                "prefill_tok_s": "prompt ids in to last-position logits out",
                "ttft_s": "prompt ids in to greedy first token id",
                "decode_b1_tok_s": "new_tokens decode steps after a prompt_tokens prompt",
                "decode_batch_tok_s": "batch * new_tokens / time of new_tokens batched decode steps"},
        },
        "model": {"id": manifest.model_id, "store_dir": str(model_dir), "precision": manifest.precision,
                  "store_source_sha256": manifest.source.get("sha256"), "gguf": str(src.path),
                  "gguf_sha256": src.description.get("sha256"),
                  "gguf_is_store_source": manifest.source.get("sha256") == src.description.get("sha256"),
                  "hf_folder": str(hf_dir) if hf_dir else None},
        "engines": engines,
        "errors": errors,
        "bandwidth_bound": bound,
        "ratios": ratios,
    }
    path = write_result("llm_engine", result, args.out)

    llama_col = [med(engines.get("llama_bench"), "ttft_s_from_pp" if k == "ttft_s" else k)
                 or med(engines.get("llama_batched_bench"), k) for k, _, _ in METRICS]
    rows = [["metric", "ours", "transformers", "llama-bench", "llama-cpp-py", "ours/hf", "ours/llama.cpp"]]
    for (key, label, _), lb in zip(METRICS, llama_col):
        label = label.replace("bN", f"b{args.batch}")
        digits = 4 if key == "ttft_s" else 1
        rows.append([label, fmt(med(engines.get("ours"), key), digits),
                     fmt(med(engines.get("transformers"), key), digits), fmt(lb, digits),
                     fmt(med(engines.get("llama_cpp_python"), key), digits),
                     fmt(ratios[key]["ours_over_transformers"], 2), fmt(ratios[key]["ours_over_llama_cpp"], 2)])
    print()
    print_table(rows)
    print(f"\nweights read per decode step {weights['bytes'] / 1e6:.1f} MB; read bandwidth {bw['best_gbps']:.1f} GB/s "
          f"(1 thread {bw['best_single_gbps']:.1f}); ceiling {ceiling:.0f} tok/s at batch 1 "
          f"({ceiling_kv:.0f} with KV reads); ours {fmt(bound['ours_b1_fraction_of_ceiling'], 2)} of it")
    for name, err in errors.items():
        print(f"{name}: not measured ({err})")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
