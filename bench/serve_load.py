"""Serving load: streaming chat completions against an OpenAI-compatible server on loopback.

What is measured, at each concurrency level (``--levels``, default
1,4,16,64): that many clients each send streaming ``/v1/chat/completions``
requests back to back (temperature 0, ``--max-tokens`` 128, a ~100-token
prompt that differs for every client and request, ``stream_options:
include_usage``) until the level's window (``--duration`` s) ends or
``--max-requests`` have been started. Requests still streaming when the
window ends are cancelled; only tokens received inside the window count.

Per request: time to first token (request sent -> first non-empty content
delta), inter-token latencies (gaps between content deltas), output tokens
(the server's usage figure when the request completed, otherwise the
number of content deltas received), errors (non-200 status, an error event
in the stream, a transport failure). Per level: aggregate output tokens/s
(tokens inside the window / window), TTFT and ITL p50/p99, requests
started/completed/cancelled, errors. TTFTs come only from requests that got
a first token inside the window; how many did not is recorded.

The client is httpx's AsyncClient with hand-parsed SSE (not the openai SDK)
to keep client overhead small. Only loopback URLs are accepted.

``--compare`` starts and stops the servers itself: ours (``python -m
appliance serve --store STORE --tls off`` with a fresh state dir and a new
API key; start-to-/readyz-200 time recorded, polling every 50 ms), then
llama-server (built once by bench/llamacpp_build.py unless ``--llama-bin``
names another) on the same GGUF (found as the factory finds it:
``resolve_source`` on the spec's source), with the same thread count;
both run the same levels, and the result holds both plus ratios (ours /
llama-server aggregate tok/s at each level, and each server's tok/s at
each level over its tok/s at 1). Every process started is killed at the
end, also on error or Ctrl-C.

``--json-schema`` runs every level twice in the same run, free and then
with ``response_format`` json_schema, ``--rounds`` times alternately (so
a change in the machine's background load hits both halves alike; a
level's figures are then over all its rounds: tokens over total window,
the median of the rounds' TTFT and ITL percentiles) (``BENCH_SCHEMA``: a title, a list of
characters with enums and integers, then a story string that runs to
``--max-tokens``, so both halves generate about as many tokens), and
records constrained / free tok/s per level. Against the appliance it also
reads the server's own grammar-mask histograms around each constrained
level: mean mask time per step (computed beside the engine step) and mean
time the step waited for it (the part on the critical path).

Results: bench/results/serve_load-<UTC date>.json. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (REPO, find_chat_model, fmt, llama_anchor, machine_info, percentile,  # noqa: E402
                     physical_cores, print_table, ratio, resolve_gguf, utc_now, write_result)
from llamacpp_build import DEFAULT_CACHE  # noqa: E402

LOOPBACK_NAMES = {"localhost"}

BENCH_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "characters": {"type": "array", "minItems": 1, "maxItems": 6, "items": {
            "type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
                                             "role": {"type": "string", "enum": ["hero", "villain", "friend"]}},
            "required": ["name", "age", "role"]}},
        "story": {"type": "string"},
    },
    "required": ["title", "characters", "story"],
}
BENCH_FORMAT = {"type": "json_schema", "json_schema": {"name": "story", "schema": BENCH_SCHEMA, "strict": True}}

WORDS = ("river market winter garden letter engine window silver planet morning doctor bridge island "
         "pencil forest kitchen mirror rocket museum signal harbor ladder candle valley jacket orange "
         "camera castle desert button thunder violin summer dragon tunnel meadow anchor basket carpet "
         "feather glacier hammer lantern marble needle oyster parrot quartz saddle tiger umbrella velvet "
         "walnut yellow zipper travel number simple happy quiet bright gentle early heavy narrow").split()


# -- requests ------------------------------------------------------------------------------------

def check_loopback(url: str) -> str:
    """The URL without a trailing slash, if its host is loopback; else exit naming the host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    ok = host in LOOPBACK_NAMES
    if not ok:
        try:
            ip = ipaddress.ip_address(host)
            ok = ip in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
        except ValueError:
            ok = False
    if parts.scheme not in ("http", "https") or not ok:
        raise SystemExit(f"--url {url!r}: only http(s) on 127.0.0.1, localhost or ::1 is allowed")
    return url.rstrip("/")


def make_prompt(client: int, n: int, words: int, seed: int) -> str:
    """A ~``words``-word prompt (about that many tokens plus the template) unique to (client, n)."""
    rng = random.Random(seed * 1_000_003 + client * 10_007 + n)
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"Request {client}-{n}. Write a short story that uses these words in order: {body}"


@dataclass
class Record:
    """One request as the client saw it; times are perf_counter seconds."""

    client: int
    sent: float
    status: int | None = None
    first: float | None = None
    deltas: list[float] = field(default_factory=list)
    usage_completion: int | None = None
    usage_prompt: int | None = None
    completed: bool = False
    cancelled: bool = False
    error: str | None = None


async def one_request(http: httpx.AsyncClient, url: str, headers: dict, body: dict, rec: Record) -> None:
    """Send one streaming request and fill ``rec`` as the stream arrives."""
    try:
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
            rec.status = resp.status_code
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                rec.error = f"HTTP {resp.status_code}: {text[:200]}"
                return
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    rec.completed = True
                    break
                try:
                    obj = json.loads(data)
                except ValueError:
                    rec.error = f"bad SSE data: {data[:200]}"
                    return
                if obj.get("error"):
                    rec.error = f"error event: {json.dumps(obj['error'])[:200]}"
                    return
                if obj.get("usage"):
                    rec.usage_completion = obj["usage"].get("completion_tokens")
                    rec.usage_prompt = obj["usage"].get("prompt_tokens")
                for ch in obj.get("choices") or []:
                    if (ch.get("delta") or {}).get("content"):
                        now = time.perf_counter()
                        if rec.first is None:
                            rec.first = now
                        rec.deltas.append(now)
            if not rec.completed and rec.error is None:
                rec.error = "stream ended without [DONE]"
    except asyncio.CancelledError:
        rec.cancelled = True
        raise
    except httpx.HTTPError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"[:200]


# -- one level -----------------------------------------------------------------------------------

async def run_level(url: str, headers: dict, model: str, concurrency: int, args, seed: int,
                    constrained: bool = False) -> dict:
    """``concurrency`` clients for one window; the level's summary with its raw per-request figures."""
    records: list[Record] = []
    started = 0
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    timeout = httpx.Timeout(connect=10.0, read=args.request_timeout, write=10.0, pool=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, verify=not args.insecure) as http:
        t0 = time.perf_counter()
        deadline = t0 + args.duration

        async def client(cid: int) -> None:
            nonlocal started
            n = 0
            while time.perf_counter() < deadline and started < args.max_requests:
                started += 1
                body = {"model": model, "temperature": 0, "max_tokens": args.max_tokens, "stream": True,
                        "stream_options": {"include_usage": True},
                        "messages": [{"role": "user", "content": make_prompt(cid, n, args.prompt_words, seed)}]}
                if args.ignore_eos:
                    body["ignore_eos"] = True
                if constrained:
                    body["response_format"] = BENCH_FORMAT
                rec = Record(client=cid, sent=time.perf_counter())
                records.append(rec)
                n += 1
                await one_request(http, url, headers, body, rec)
                if rec.error and not rec.completed:
                    await asyncio.sleep(0.05)  # don't spin on a refusing server

        tasks = [asyncio.create_task(client(c)) for c in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        end = min(time.perf_counter(), deadline) if pending else time.perf_counter()
        for t in done:
            if t.exception() is not None:
                raise t.exception()
    window = end - t0
    return summarise(records, concurrency, t0, end, window, started)


def itl_summary(gaps: list[float]) -> dict:
    """One request's inter-token gaps as a few numbers (the level's percentiles use every gap)."""
    if not gaps:
        return {"n": 0}
    ordered = sorted(gaps)
    return {"n": len(gaps), "p50": round(ordered[len(gaps) // 2], 5), "max": round(ordered[-1], 5)}


def summarise(records: list[Record], concurrency: int, t0: float, end: float, window: float, started: int) -> dict:
    """Aggregate tok/s inside the window, TTFT and ITL percentiles, counts, and the raw records."""
    tokens = 0
    ttfts, itls, raw = [], [], []
    for r in records:
        in_window = [d for d in r.deltas if d <= end]
        if r.completed and r.usage_completion is not None and (not r.deltas or r.deltas[-1] <= end):
            n_tok = r.usage_completion
        else:
            n_tok = len(in_window)
        tokens += n_tok
        gaps = [b - a for a, b in zip(in_window, in_window[1:])]
        itls.extend(gaps)
        if r.first is not None and r.first <= end:
            ttfts.append(r.first - r.sent)
        raw.append({"client": r.client, "sent_s": round(r.sent - t0, 4), "status": r.status,
                    "ttft_s": round(r.first - r.sent, 5) if r.first is not None else None,
                    "output_tokens": n_tok, "content_deltas": len(in_window),
                    "prompt_tokens": r.usage_prompt, "completed": r.completed, "cancelled": r.cancelled,
                    "duration_s": round((r.deltas[-1] if r.deltas else end) - r.sent, 4),
                    "itl_s": itl_summary(gaps), "error": r.error})
    errors = [r for r in records if r.error and not r.cancelled]
    completed = [r for r in records if r.completed]

    def pct(xs, q):
        v = percentile(xs, q)
        return round(v, 5) if v is not None else None

    return {
        "concurrency": concurrency,
        "window_s": round(window, 3),
        "requests_started": started,
        "requests_completed": len(completed),
        "requests_cancelled_at_deadline": sum(r.cancelled for r in records),
        "requests_without_first_token": sum(r.first is None and not r.error for r in records),
        "errors": len(errors),
        "error_samples": sorted({r.error for r in errors})[:5],
        "output_tokens": tokens,
        "aggregate_tok_s": round(tokens / window, 3) if window > 0 else None,
        "ttft_s": {"p50": pct(ttfts, 50), "p99": pct(ttfts, 99), "mean": round(statistics.fmean(ttfts), 5)
                   if ttfts else None, "n": len(ttfts)},
        "itl_s": {"p50": pct(itls, 50), "p99": pct(itls, 99), "n": len(itls)},
        "mean_output_tokens_completed": round(statistics.fmean(
            [r.usage_completion or len(r.deltas) for r in completed]), 2) if completed else None,
        "mean_prompt_tokens": round(statistics.fmean([r.usage_prompt for r in records if r.usage_prompt]), 1)
        if any(r.usage_prompt for r in records) else None,
        "requests": raw,
    }


async def warm_up(url: str, headers: dict, model: str, args) -> None:
    """One short unmeasured request so first-use costs don't land in level 1."""
    timeout = httpx.Timeout(connect=10.0, read=args.request_timeout, write=10.0, pool=10.0)
    async with httpx.AsyncClient(timeout=timeout, verify=not args.insecure) as http:
        rec = Record(client=-1, sent=time.perf_counter())
        body = {"model": model, "temperature": 0, "max_tokens": 8, "stream": True,
                "messages": [{"role": "user", "content": make_prompt(-1, 0, args.prompt_words, args.seed)}]}
        await one_request(http, url, headers, body, rec)
        if rec.error:
            raise RuntimeError(f"warm-up request failed: {rec.error}")


def discover_model(url: str, headers: dict, args) -> str:
    """The first model the server lists."""
    resp = httpx.get(f"{url}/v1/models", headers=headers, timeout=30, verify=not args.insecure)
    resp.raise_for_status()
    return resp.json()["data"][0]["id"]


def mask_histograms(url: str, headers: dict, args) -> dict[str, float]:
    """The appliance's grammar-mask histogram sums and counts (empty for a server without them)."""
    try:
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=10, verify=not args.insecure).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("appliance_grammar_mask_seconds", "appliance_grammar_mask_wait_seconds"):
            for part in ("sum", "count"):
                if line.startswith(f"{name}_{part}{{"):
                    out[f"{name}_{part}"] = out.get(f"{name}_{part}", 0.0) + float(line.rpartition(" ")[2])
    return out


def mask_figures(before: dict[str, float], after: dict[str, float]) -> dict | None:
    """Mean grammar-mask time per step, and the mean wait for it after the engine step, between two scrapes."""
    if not after:
        return None
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    steps = d.get("appliance_grammar_mask_seconds_count", 0.0)
    if not steps:
        return {"steps": 0}
    return {"steps": int(steps),
            "mean_mask_s": round(d["appliance_grammar_mask_seconds_sum"] / steps, 7),
            "mean_wait_s": round(d["appliance_grammar_mask_wait_seconds_sum"] / steps, 7)}


def merge_rounds(rounds: list[dict]) -> dict:
    """One level's figures over its rounds (one round: that round as it is)."""
    if len(rounds) == 1:
        return rounds[0]
    window = sum(r["window_s"] for r in rounds)
    tokens = sum(r["output_tokens"] for r in rounds)

    def med(key: str, q: str) -> float | None:
        vals = [r[key][q] for r in rounds if r[key][q] is not None]
        return round(statistics.median(vals), 5) if vals else None

    merged = {"concurrency": rounds[0]["concurrency"], "rounds": rounds, "window_s": round(window, 3),
              "output_tokens": tokens, "aggregate_tok_s": round(tokens / window, 3) if window else None,
              "ttft_s": {"p50": med("ttft_s", "p50"), "p99": med("ttft_s", "p99")},
              "itl_s": {"p50": med("itl_s", "p50"), "p99": med("itl_s", "p99")},
              "errors": sum(r["errors"] for r in rounds)}
    for key in ("requests_started", "requests_completed"):
        merged[key] = sum(r[key] for r in rounds)
    masks = [r["grammar_mask"] for r in rounds if r.get("grammar_mask") and r["grammar_mask"].get("steps")]
    if masks:
        steps = sum(m["steps"] for m in masks)
        merged["grammar_mask"] = {"steps": steps, **{k: round(sum(m[k] * m["steps"] for m in masks) / steps, 7)
                                                     for k in ("mean_mask_s", "mean_wait_s")}}
    elif any("grammar_mask" in r for r in rounds):
        merged["grammar_mask"] = None
    return merged


def run_levels(url: str, api_key: str | None, model: str | None, label: str, args) -> dict:
    """Warm up, then every level in turn (free, then with --json-schema constrained); the server's block."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    model = model or discover_model(url, headers, args)
    asyncio.run(warm_up(url, headers, model, args))
    levels, constrained_levels = [], []
    for i, c in enumerate(args.levels):
        rounds: dict[bool, list[dict]] = {False: [], True: []}
        for r in range(args.rounds if args.json_schema else 1):
            for constrained in (False, True) if args.json_schema else (False,):
                kind = "json_schema" if constrained else "free"
                print(f"  {label}: {c} client(s), {kind}, round {r + 1}, for {args.duration:g} s ...", flush=True)
                before = mask_histograms(url, headers, args) if constrained else {}
                lvl = asyncio.run(run_level(url, headers, model, c, args, seed=args.seed + i * 1000 + r,
                                            constrained=constrained))
                if constrained:
                    lvl["grammar_mask"] = mask_figures(before, mask_histograms(url, headers, args))
                print(f"    {lvl['aggregate_tok_s']} tok/s, TTFT p50 {lvl['ttft_s']['p50']} s, "
                      f"{lvl['requests_completed']}/{lvl['requests_started']} completed, {lvl['errors']} errors",
                      flush=True)
                rounds[constrained].append(lvl)
                time.sleep(args.settle)
        levels.append(merge_rounds(rounds[False]))
        if args.json_schema:
            constrained_levels.append(merge_rounds(rounds[True]))
    block = {"label": label, "url": url, "model": model, "levels": levels}
    if args.json_schema:
        block["levels_json_schema"] = constrained_levels
    return block


# -- managed servers -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Managed:
    """A server process in its own session, logging to a file, killed (group and all) on stop."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict | None = None):
        self.name, self.cmd, self.log_path = name, cmd, log
        self.log = log.open("wb")
        self.started = time.perf_counter()
        self.stopped = False
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=env)

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, url: str, headers: dict, timeout: float) -> float:
        """Poll ``url`` every 50 ms until it answers 200; seconds since the process started."""
        deadline = self.started + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                                       f"{self.tail()}")
                try:
                    if http.get(url, headers=headers).status_code == 200:
                        return time.perf_counter() - self.started
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} was not ready within {timeout:g} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers; safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.log.close()


def compare(args, procs: list[Managed], tmp: Path) -> dict:
    """Start ours, run the levels, stop it; the same for llama-server (state and logs under ``tmp``)."""
    model_dir, manifest = find_chat_model(args.store.resolve(), args.model)
    src, _ = resolve_gguf(args.spec, manifest.model_id)
    if src.kind != "gguf":
        raise SystemExit(f"the source of {manifest.model_id} is not a GGUF; llama-server needs one")
    servers: dict = {}

    # ours
    state = tmp / "state"
    py = str(args.appliance_python)
    proc = subprocess.run([py, "-m", "appliance", "keys", "create", "bench", "--state-dir", str(state)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"keys create failed: {proc.stderr.strip()[-500:]}")
    key = proc.stdout.strip().splitlines()[-1].split()[-1]
    port = free_port()
    cmd = [py, "-m", "appliance", "serve", "--store", str(args.store.resolve()), "--state-dir", str(state),
           "--host", "127.0.0.1", "--port", str(port), "--tls", "off", "--threads", str(args.threads)]
    print(f"starting ours on 127.0.0.1:{port} ...", flush=True)
    ours = Managed("appliance serve", cmd, tmp / "appliance.log")
    procs.append(ours)
    headers = {"Authorization": f"Bearer {key}"}
    ready = ours.wait_ready(f"http://127.0.0.1:{port}/readyz", headers, args.ready_timeout)
    try:
        reported = httpx.get(f"http://127.0.0.1:{port}/readyz", headers=headers, timeout=5).json().get("ready_seconds")
    except (httpx.HTTPError, ValueError):
        reported = None
    print(f"  ready after {ready:.2f} s", flush=True)
    block = run_levels(f"http://127.0.0.1:{port}", key, manifest.model_id, "appliance", args)
    block.update({"start_to_ready_s": round(ready, 3), "server_reported_ready_seconds": reported,
                  "command": ["python"] + cmd[1:], "threads": args.threads})
    servers["appliance"] = block
    ours.stop()

    # llama-server
    exe = Path(args.llama_bin) / "llama-server"
    if not exe.exists():
        servers["llama-server"] = {"not_measured": f"{exe} not found"}
        return servers
    port = free_port()
    cmd = [str(exe), "-m", str(src.path), "-c", str(args.llama_ctx), "-np", str(args.llama_parallel),
           "-t", str(args.threads), "-tb", str(args.threads), "--host", "127.0.0.1", "--port", str(port),
           "-cb", "--no-webui"]
    print(f"starting llama-server on 127.0.0.1:{port} ...", flush=True)
    llama = Managed("llama-server", cmd, tmp / "llama-server.log")
    procs.append(llama)
    ready = llama.wait_ready(f"http://127.0.0.1:{port}/health", {}, args.ready_timeout)
    print(f"  ready after {ready:.2f} s", flush=True)
    block = run_levels(f"http://127.0.0.1:{port}", None, manifest.model_id, "llama-server", args)
    block.update({"start_to_ready_s": round(ready, 3), "command": ["llama-server"] + cmd[1:],
                  "threads": args.threads, "gguf": str(src.path), "gguf_sha256": src.description.get("sha256")})
    servers["llama-server"] = block
    llama.stop()
    return servers


def level_map(block: dict, key: str) -> dict[int, float | None]:
    """concurrency -> a level figure (a dotted key such as 'ttft_s.p50')."""
    out = {}
    for lvl in block.get("levels", []):
        v = lvl
        for part in key.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        out[lvl["concurrency"]] = v
    return out


def ratios(servers: dict) -> dict:
    """ours / llama-server at each level, and each server's tok/s at each level over its tok/s at 1."""
    out: dict = {"scaling_vs_1_client": {}}
    for name, block in servers.items():
        tok = level_map(block, "aggregate_tok_s")
        if 1 in tok:
            out["scaling_vs_1_client"][name] = {c: ratio(v, tok[1]) for c, v in tok.items()}
        if "levels_json_schema" in block:
            constrained = level_map({"levels": block["levels_json_schema"]}, "aggregate_tok_s")
            out.setdefault("json_schema_over_free_tok_s", {})[name] = {c: ratio(v, tok.get(c))
                                                                       for c, v in constrained.items()}
    if "appliance" in servers and "llama-server" in servers and "levels" in servers["llama-server"]:
        a, b = servers["appliance"], servers["llama-server"]
        for key, name in (("aggregate_tok_s", "ours_over_llama_server_tok_s"),
                          ("ttft_s.p50", "ours_over_llama_server_ttft_p50"),
                          ("itl_s.p50", "ours_over_llama_server_itl_p50")):
            ma, mb = level_map(a, key), level_map(b, key)
            out[name] = {c: ratio(ma.get(c), mb.get(c)) for c in ma}
        if 16 in level_map(a, "aggregate_tok_s"):
            out["ours_16_over_ours_1_tok_s"] = out["scaling_vs_1_client"].get("appliance", {}).get(16)
    return out


# -- main ----------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", default=None, help="server to drive, e.g. http://127.0.0.1:8443 (loopback only)")
    p.add_argument("--api-key", default=None)
    p.add_argument("--api-key-file", type=Path, default=None, help="file whose first line is the API key")
    p.add_argument("--model", default=None, help="model id (default: the server's first / the store's chat model)")
    p.add_argument("--label", default="server", help="name of the server in the result, e.g. appliance")
    p.add_argument("--levels", default="1,4,16,64", help="comma list of concurrent clients")
    p.add_argument("--duration", type=float, default=30.0, help="window per level, seconds")
    p.add_argument("--max-requests", type=int, default=2000, help="requests started per level at most")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prompt-words", type=int, default=52,
                   help="random words per prompt; 52 gives ~100 prompt tokens with SmolLM2's chat template")
    p.add_argument("--ignore-eos", action="store_true",
                   help="send ignore_eos: true (llama-server honours it; the appliance ignores unknown fields)")
    p.add_argument("--request-timeout", type=float, default=600.0, help="read timeout per request, seconds")
    p.add_argument("--settle", type=float, default=2.0, help="pause between levels, seconds")
    p.add_argument("--insecure", action="store_true", help="don't verify TLS (self-signed box certificate)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json-schema", action="store_true",
                   help="run every level free and then with response_format json_schema, in the same run")
    p.add_argument("--rounds", type=int, default=1, help="--json-schema: alternate free and constrained this often")
    p.add_argument("--compare", action="store_true", help="start ours and llama-server and compare them")
    p.add_argument("--store", type=Path, default=None, help="--compare: model store to serve")
    p.add_argument("--spec", type=Path, default=REPO / "appliance.toml", help="--compare: spec naming the GGUF")
    p.add_argument("--threads", type=int, default=physical_cores(), help="--compare: threads for both servers")
    p.add_argument("--appliance-python", type=Path, default=Path(sys.executable),
                   help="--compare: interpreter with the appliance installed")
    p.add_argument("--llama-bin", type=Path, default=None,
                   help="--compare: llama.cpp build/bin (default: built by bench/llamacpp_build.py)")
    p.add_argument("--llama-cache", type=Path, default=DEFAULT_CACHE, help="where llamacpp_build.py builds")
    p.add_argument("--llama-ctx", type=int, default=32768, help="--compare: llama-server -c")
    p.add_argument("--llama-parallel", type=int, default=16, help="--compare: llama-server -np")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="--compare: seconds to wait for a server")
    p.add_argument("--out", type=Path, default=None, help="result file (default bench/results/serve_load-DATE.json)")
    p.add_argument("--quick", action="store_true", help="levels 1,4 for 5 s each and 32 tokens, for a smoke test; "
                   "committed results come from full runs")
    args = p.parse_args(argv)
    if args.quick:
        args.levels, args.duration, args.max_tokens, args.settle = "1,4", 5.0, 32, 0.5
    try:
        args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError:
        p.error("--levels: a comma list of integers, e.g. 1,4,16,64")
    if not args.levels or min(args.levels) < 1:
        p.error("--levels: every level must be at least 1")
    if args.compare and args.store is None:
        p.error("--compare needs --store")
    if not args.compare:
        if not args.url:
            p.error("give --url (a running server on loopback) or --compare")
        args.url = check_loopback(args.url)
        if args.api_key_file:
            args.api_key = args.api_key_file.read_text().strip().splitlines()[0].strip()
    return args


def _sigterm(_signum, _frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    """Run, printing a one-line reason instead of a traceback when a server misbehaves."""
    try:
        return _main(argv)
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"serve_load: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("serve_load: interrupted; servers stopped", file=sys.stderr)
        return 130


def _main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    if args.compare:
        llama_anchor(args, binding=False)
    started = utc_now()
    t_start = time.perf_counter()
    procs: list[Managed] = []
    tmp = Path(tempfile.mkdtemp(prefix="serve_load-")) if args.compare else None
    ok = False
    try:
        if args.compare:
            servers = compare(args, procs, tmp)
        else:
            servers = {args.label: run_levels(args.url, args.api_key, args.model, args.label, args)}
        ok = True
    finally:
        for pr in procs:
            pr.stop()
        if tmp is not None:
            if ok:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                print(f"server state and logs kept in {tmp}", file=sys.stderr)
    result = {
        "benchmark": "serve_load",
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "machine": machine_info(None, args.llama_bin),
        "parameters": {
            "mode": "compare" if args.compare else "single", "quick": args.quick, "levels": args.levels,
            "duration_s": args.duration,
            "max_requests_per_level": args.max_requests, "max_tokens": args.max_tokens, "temperature": 0,
            "prompt_words": args.prompt_words, "ignore_eos": args.ignore_eos, "stream": True,
            "json_schema": BENCH_FORMAT if args.json_schema else None,
            "rounds": args.rounds if args.json_schema else None,
            "stream_options": {"include_usage": True}, "settle_s": args.settle, "seed": args.seed,
            "threads": args.threads if args.compare else None,
            "llama_server": {"ctx": args.llama_ctx, "parallel": args.llama_parallel} if args.compare else None,
            "client": f"httpx {httpx.__version__} AsyncClient, hand-parsed SSE",
            "token_count": "usage.completion_tokens for completed requests, content deltas inside the window "
                           "for cancelled ones",
        },
        "servers": servers,
        "ratios": ratios(servers),
    }
    path = write_result("serve_load", result, args.out)

    rows = [["server", "clients", "tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "done/started", "errors"]]
    for name, block in servers.items():
        for kind, lvl in [("", x) for x in block.get("levels", [])] + \
                [(" json_schema", x) for x in block.get("levels_json_schema", [])]:
            rows.append([name + kind, lvl["concurrency"], fmt(lvl["aggregate_tok_s"]), fmt(lvl["ttft_s"]["p50"], 3),
                         fmt(lvl["ttft_s"]["p99"], 3), fmt(lvl["itl_s"]["p50"], 4), fmt(lvl["itl_s"]["p99"], 4),
                         f"{lvl['requests_completed']}/{lvl['requests_started']}", lvl["errors"]])
    print()
    print_table(rows)
    r = result["ratios"]
    for name, block in servers.items():
        if "start_to_ready_s" in block:
            print(f"{name}: start to ready {block['start_to_ready_s']:.2f} s")
    if "ours_over_llama_server_tok_s" in r:
        print("ours / llama-server tok/s: " + ", ".join(f"{c}: {fmt(v, 2)}"
                                                       for c, v in r["ours_over_llama_server_tok_s"].items()))
    for name, per_level in r.get("json_schema_over_free_tok_s", {}).items():
        print(f"{name} json_schema / free tok/s: " + ", ".join(f"{c}: {fmt(v, 3)}" for c, v in per_level.items()))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
