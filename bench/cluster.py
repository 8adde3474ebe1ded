"""Two boxes behind vllm-router (`appliance cluster`): what the router costs, what prefix-aware routing gains.

* overhead: streamed chat one request at a time, straight to a box and
  through the router, interleaved; time to first token (TTFT) and the gaps
  between tokens (ITL), p50 and p99;
* prefix routing: multi-turn chats (an odd number of conversations, so
  round-robin moves each conversation between the boxes every turn), TTFT
  of the later turns under cache_aware and under round_robin;
* failover: four clients, each sending one request after another, through
  the router while one box is killed with SIGKILL and restarted; failed
  requests, the slowest request spanning the kill (the retries' cost), and
  a timeline from the kill: when the router's breaker opened and its
  probes took the box out, the last request the router tried on it, the
  restart, the box ready, the router's probes taking it back, and the
  first request it served again. Four clients, not one: cache_aware gives
  a new prompt to the least-busy box and every tie to the same box, so
  one client alone sends everything to one box, which is the killed one
  in only about half the router starts.

Both boxes share one machine's cores, so nothing here is a throughput
figure: requests are sent one at a time (four clients in failover).
Plain HTTP on loopback (the boxes' TLS would add the same handshake to
both paths). Results: bench/results/cluster-<UTC date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from itertools import count
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine_info, utc_now, write_result  # noqa: E402

MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if pred():
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Box:
    def __init__(self, store: Path, state: Path, port: int | None = None):
        self.store, self.state, self.port = store, state, port or free_port()
        state.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([sys.executable, "-m", "appliance", "keys", "create", "bench", "--state-dir", str(state)],
                             capture_output=True, text=True, check=True, cwd=REPO).stdout
        self.key = out.split()[-1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", "--store", str(self.store),
                                      "--state-dir", str(self.state), "--host", "127.0.0.1", "--port", str(self.port),
                                      "--tls", "off", "--log-level", "warning"], cwd=REPO,
                                     stdout=(self.state / "server.log").open("a"), stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=2).status_code == 200

    def chats(self) -> float:
        text = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {self.key}"}, timeout=5).text
        for line in text.splitlines():
            if line.startswith("appliance_requests_total{") and 'route="/v1/chat/completions"' in line \
                    and 'status="200"' in line:
                return float(line.rpartition(" ")[2])
        return 0.0


class Router:
    def __init__(self, boxes: list[Box], policy: str, log: Path):
        port, metrics_port = free_port(), free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "cluster", *(b.url for b in boxes), "--port",
                                      str(port), "--metrics-port", str(metrics_port), "--policy", policy,
                                      "--health-interval", "1", "--log-level", "warning"],
                                     cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.url, self.metrics_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
        wait(lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200, 60, f"the {policy} router")

    def view_of(self, box: Box) -> dict[str, float]:
        """The router's own metrics about one box: breaker state (0 closed, 1 open), health, request outcomes."""
        seen: dict[str, float] = {}
        for line in httpx.get(self.metrics_url, timeout=5).text.splitlines():
            if f'worker="{box.url}"' not in line:
                continue
            name = line.split("{")[0].removeprefix("vllm_router_")
            if name == "cb_outcomes_total":
                name += "_" + line.split('outcome="')[1].split('"')[0]
            seen[name] = float(line.rpartition(" ")[2])
        return seen


def stream(url: str, key: str, messages: list[dict], max_tokens: int) -> tuple[float, list[float], str]:
    """TTFT, the gaps between content chunks, and the text, for one streamed chat."""
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "stream": True, "temperature": 0}
    start, last, ttft, gaps, text = time.perf_counter(), None, None, [], []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {key}"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
            if not delta:
                continue
            now = time.perf_counter()
            if ttft is None:
                ttft = now - start
            else:
                gaps.append(now - last)
            last = now
            text.append(delta)
    return ttft or float("nan"), gaps, "".join(text)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))] * 1000, 2)


def summary(values: list[float]) -> dict:
    return {"p50_ms": pct(values, 50), "p99_ms": pct(values, 99), "n": len(values)}


def overhead(box: Box, router: str, n: int) -> dict:
    runs = {"direct": ([], []), "router": ([], [])}
    for i in range(n):
        for name, url in (("direct", box.url), ("router", router)):
            ttft, gaps, _ = stream(url, box.key, [{"role": "user", "content": f"Count to five, try {i}."}], 16)
            runs[name][0].append(ttft)
            runs[name][1].extend(gaps)
    return {name: {"ttft": summary(t), "itl": summary(g)} for name, (t, g) in runs.items()}


def prefix_routing(key: str, router: str, conversations: int, turns: int) -> dict:
    chats = [[{"role": "system", "content": f"You are helper {c}. " + f"Rule {c}: answer briefly and kindly. " * 40}]
             for c in range(conversations)]
    first, later = [], []
    for turn in range(turns):
        for c, messages in enumerate(chats):
            messages.append({"role": "user", "content": f"Turn {turn}: what is {turn} plus {c}?"})
            ttft, _, text = stream(router, key, messages, 8)
            messages.append({"role": "assistant", "content": text})
            (first if turn == 0 else later).append(ttft)
    return {"first_turn_ttft": summary(first), "later_turns_ttft": summary(later)}


def failover(boxes: list[Box], router: Router, clients: int = 4, timeout: float = 120) -> dict:
    a, b = boxes
    log: list[tuple[float, float, bool]] = []
    views: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()
    numbers = count()

    def load() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                r = httpx.post(f"{router.url}/v1/chat/completions", timeout=120,
                               headers={"Authorization": f"Bearer {a.key}"},
                               json={"model": MODEL, "max_tokens": 8, "messages": [
                                   {"role": "user", "content": f"Failover {next(numbers)}: a colour?"}]})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            log.append((start, time.monotonic(), ok))

    def watch() -> None:
        while not stop.is_set():
            now = time.monotonic()
            try:
                views.append((now, router.view_of(b)))
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    threads = [threading.Thread(target=load) for _ in range(clients)] + [threading.Thread(target=watch)]
    for t in threads:
        t.start()
    try:
        wait(lambda: len(log) >= 10, 60, "the load")
        killed = time.monotonic()
        os.kill(b.proc.pid, signal.SIGKILL)
        b.proc.wait()
        wait(lambda: sum(1 for s, _, _ in log if s > killed) >= 20, 120, "requests after the kill")
        failures_before = views[-1][1].get("cb_outcomes_total_failure", 0)
        sent_before = views[-1][1].get("processed_requests_total", 0)
        restarted = time.monotonic()
        b.start()
        ready = wait(b.ready, 120, "the restarted box")
        served = b.chats()
        back = wait(lambda: b.chats() > served, timeout, "a request on the restarted box")
        seen = len(views)
        wait(lambda: any(v.get("cb_state") == 0 for _, v in views[seen - 1:]), 10, "the router to close the breaker")
    finally:
        stop.set()
        for t in threads:
            t.join()

    def first(after: float, pred) -> float | None:
        return next((round(t - killed, 2) for t, v in views if t >= after and pred(v)), None)

    failures = [(t, v["cb_outcomes_total_failure"]) for t, v in views
                if killed <= t <= restarted and "cb_outcomes_total_failure" in v]
    last_try = next((t for t, n in failures if n == failures_before), None)
    spanning = [end - start for start, end, _ in log if start <= killed + 3 and end >= killed]
    return {"clients": clients, "requests": len(log), "failed": sum(1 for *_, ok in log if not ok),
            "slowest_request_spanning_the_kill_s": round(max(spanning), 3) if spanning else None,
            "median_request_s": round(sorted(e - s for s, e, _ in log)[len(log) // 2], 3),
            "timeline_after_kill_s": {
                "breaker_open": first(killed, lambda v: v.get("cb_state") == 1),
                "probes_took_it_out": first(killed, lambda v: v.get("worker_health") == 0),
                "last_request_tried_on_it": round(last_try - killed, 2) if last_try is not None else None,
                "restarted": round(restarted - killed, 2),
                "ready": round(ready - killed, 2),
                "probes_took_it_back": first(restarted, lambda v: v.get("worker_health") == 1),
                "first_request_sent_to_it_again": first(
                    restarted, lambda v: v.get("processed_requests_total", 0) > sent_before),
                "first_request_served_again": round(back - killed, 2),
                "breaker_closed": first(restarted, lambda v: v.get("cb_state") == 0)},
            "ready_after_restart_s": round(ready - restarted, 2),
            "back_in_rotation_after_ready_s": round(back - ready, 2),
            "sampled_every_s": 0.1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, default=Path(os.environ.get("APPLIANCE_TEST_STORE", "/opt/appliance/store")))
    p.add_argument("--work", type=Path, default=Path("/tmp/appliance-bench-cluster"))
    p.add_argument("--requests", type=int, default=30, help="overhead: streamed requests per path")
    p.add_argument("--conversations", type=int, default=5, help="prefix routing: conversations (odd)")
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    stamp = str(time.time_ns())
    boxes = [Box(args.store, args.work / stamp / name) for name in ("a", "b")]
    subprocess.run([sys.executable, "-m", "appliance", "keys", "import", "bench", "--state-dir", str(boxes[1].state)],
                   input=boxes[0].key + "\n", text=True, check=True, capture_output=True, cwd=REPO)
    procs = []
    try:
        for box in boxes:
            wait(box.ready, 120, f"box {box.url}")
        result: dict = {"benchmark": "cluster", "when": utc_now().isoformat(), "machine": machine_info(),
                        "setup": {"boxes": 2, "router": "vllm-router 0.1.17 via `appliance cluster`", "model": MODEL,
                                  "transport": "plain HTTP on loopback", "store": str(args.store),
                                  "note": "both boxes and the router share one machine's cores; requests are sent "
                                          "one at a time (failover: four clients), so no throughput is claimed"}}
        router = Router(boxes, "cache_aware", args.work / stamp / "router-cache_aware.log")
        procs.append(router.proc)
        url = router.url
        result["overhead"] = overhead(boxes[0], url, args.requests)
        print(json.dumps(result["overhead"], indent=1), flush=True)
        result["prefix_routing"] = {"cache_aware": prefix_routing(boxes[0].key, url, args.conversations, args.turns)}
        rr = Router(boxes, "round_robin", args.work / stamp / "router-round_robin.log")
        procs.append(rr.proc)
        result["prefix_routing"]["round_robin"] = prefix_routing(boxes[0].key, rr.url, args.conversations, args.turns)
        ca = result["prefix_routing"]["cache_aware"]["later_turns_ttft"]["p50_ms"]
        robin = result["prefix_routing"]["round_robin"]["later_turns_ttft"]["p50_ms"]
        result["prefix_routing"]["later_turns_ttft_p50_gain"] = round(robin / ca, 2) if ca else None
        print(json.dumps(result["prefix_routing"], indent=1), flush=True)
        rr.proc.terminate()
        rr.proc.wait(10)
        result["failover"] = failover(boxes, router)
        print(json.dumps(result["failover"], indent=1), flush=True)
        print(write_result("cluster", result, args.out))
    finally:
        for proc in [*procs, *(b.proc for b in boxes)]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
