"""A new admin's first minutes, timed: start the box, read the setup code, claim it in the console,
make a key, make the first API call. Median of --runs fresh boxes, with each step's seconds.

The browser is Debian's chromium through playwright (as the console tests use it). Steps a person
types are driven by the script, so the figures are the box's part of each step, not human time.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, write_result  # noqa: E402

CODE = re.compile(r"\b[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}\b")
PASSWORD = "quiet-harbour-lantern-42"
STEPS = ("start_to_setup_code_s", "start_to_ready_s", "claim_in_console_s", "create_key_in_console_s",
         "first_chat_completion_s", "start_to_first_answer_s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"first_run: timed out waiting for {what}")


def one_run(store: Path, browser) -> dict:
    from openai import OpenAI

    state = Path(tempfile.mkdtemp(prefix="first-run-")) / "state"
    port = _free_port()
    url = f"https://127.0.0.1:{port}"
    log = state.parent / "up.log"
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "up", "--store", str(store), "--state-dir", str(state),
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    try:
        code = _poll(lambda: CODE.search(log.read_text()), 120, "the setup code").group(0)
        t_code = time.monotonic() - start
        _poll(lambda: httpx.get(f"{url}/healthz", verify=False, timeout=2).status_code == 200
              and "ready in" in (state / "server.log").read_text(), 300, "the server to be ready")
        t_ready = time.monotonic() - start
        ctx = browser.new_context(ignore_https_errors=True)
        page = ctx.new_page()
        t0 = time.monotonic()
        page.goto(f"{url}/console")
        page.get_by_label("Setup code").fill(code)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Password again").fill(PASSWORD)
        page.get_by_role("button", name="Create admin and sign in").click()
        page.wait_for_url(f"{url}/console")
        t_claim = time.monotonic() - t0
        t0 = time.monotonic()
        page.goto(f"{url}/console/keys")
        page.get_by_label("Name").fill("first")
        page.get_by_role("button", name="Create key").click()
        secret = page.locator("#new-key").inner_text().strip()
        with page.expect_download() as download:
            page.get_by_role("link", name="download it").click()
        cert = str(download.value.path())
        t_key = time.monotonic() - t0
        t0 = time.monotonic()
        client = OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0,
                        http_client=httpx.Client(verify=ssl.create_default_context(cafile=cert)))
        client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=16, temperature=0,
                                       messages=[{"role": "user", "content": "Hello!"}])
        t_chat = time.monotonic() - t0
        ctx.close()
        return dict(zip(STEPS, (t_code, t_ready, t_claim, t_key, t_chat, time.monotonic() - start)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    runs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for i in range(args.runs):
            runs.append({k: round(v, 3) for k, v in one_run(args.store, browser).items()})
            print(f"run {i + 1}: {runs[-1]}", flush=True)
        browser.close()
    medians = {k: round(statistics.median(r[k] for r in runs), 3) for k in STEPS}
    path = write_result("first_run", {"machine": machine_info(), "parameters": {"runs": args.runs,
                                      "store": str(args.store), "load_avg_at_start": os.getloadavg()[0]},
                                      "median": medians, "runs": runs}, args.out)
    print_table([["step", "median s"], *[[k, f"{v:.2f}"] for k, v in medians.items()]])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
