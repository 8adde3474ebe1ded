"""Two real boxes behind vllm-router (`appliance cluster`) on loopback, over HTTPS signed by a customer's CA.

What a LAN client sees: one endpoint for chat and embeddings, a chat's turns
kept on one box, a box killed mid-load costing no request and taking requests
again once restarted, a box that is not ready skipped, and each box's keys still
enforced through the router.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from conftest import CHAT_MODEL, EMBED_MODEL, Server, free_port, needs_avx512, start_server, stop_process, stop_server
from customer_ca import CustomerCA
from wait import wait_until

pytestmark = [pytest.mark.cluster, needs_avx512,
              pytest.mark.skipif(shutil.which("vllm-router", path=str(Path(sys.executable).parent)) is None,
                                 reason="vllm-router is not installed (pip install '.[cluster]')")]

CHAT_ROUTE = {"route": "/v1/chat/completions", "status": "200"}


@dataclass
class Router:
    url: str
    proc: subprocess.Popen
    log: Path


def start_router(boxes: list[str], ca: Path, log: Path, *extra: str) -> Router:
    port = free_port()
    args = [sys.executable, "-m", "appliance", "cluster", *boxes, "--ca", str(ca), "--port", str(port),
            "--metrics-port", str(free_port()), "--health-interval", "1", "--startup-timeout", "60", *extra]
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    router = Router(f"http://127.0.0.1:{port}", proc, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the router exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return httpx.get(f"{router.url}/health", timeout=2).status_code == 200

    wait_until(up, timeout=90, what="the router to answer", interval=0.2, ignore=(httpx.HTTPError,),
               details=lambda: log.read_text()[-3000:])
    return router


def start_box(store: Path, state: Path, ca: CustomerCA, name: str, *extra: str) -> Server:
    cert, key = ca.issue(name)
    return start_server(store, state, *extra, scheme="https",
                        env={"APPLIANCE_TLS_CERT": str(cert), "APPLIANCE_TLS_KEY": str(key)})


def chats_served(box: Server, ca: CustomerCA) -> float:
    r = httpx.get(f"{box.url}/metrics", headers=box.headers(), verify=ca.context(), timeout=10)
    for line in r.text.splitlines():
        if line.startswith("appliance_requests_total{") and all(f'{k}="{v}"' in line for k, v in CHAT_ROUTE.items()):
            return float(line.rpartition(" ")[2])
    return 0.0


def import_key(box: Server, key: str) -> None:
    subprocess.run([sys.executable, "-m", "appliance", "keys", "import", "cluster-client", "--state-dir",
                    str(box.state_dir)], input=key + "\n", text=True, check=True, capture_output=True)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CustomerCA:
    return CustomerCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def boxes(default_store, tmp_path_factory, ca):
    state = tmp_path_factory.mktemp("boxes")
    a = start_box(default_store, state / "a", ca, "box-a")
    b = start_box(default_store, state / "b", ca, "box-b")
    import_key(b, a.key)  # one client key, accepted by both boxes
    pair = [a, b]
    yield pair
    for box in pair:  # the failover test replaces b with its restarted process
        stop_server(box)


@pytest.fixture(scope="module")
def router(boxes, ca, tmp_path_factory):
    r = start_router([b.url for b in boxes], ca.pem, tmp_path_factory.mktemp("router") / "router.log")
    yield r
    stop_process(r.proc, 10)


@pytest.fixture(scope="module")
def client(router, boxes):
    return openai.OpenAI(base_url=f"{router.url}/v1", api_key=boxes[0].key, max_retries=0, timeout=120)


def test_chat_and_embeddings_through_the_router(client):
    chat = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hello"}],
                                          max_tokens=4)
    assert chat.choices[0].message.content and chat.model == CHAT_MODEL
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    emb = client.embeddings.create(model=EMBED_MODEL, input=["one", "two"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    assert {m.id for m in client.models.list()} >= {CHAT_MODEL, EMBED_MODEL}


def test_a_conversations_turns_land_on_the_box_that_served_its_first_turn(client, boxes, ca):
    def served_by() -> int:
        counts = [chats_served(b, ca) for b in boxes]
        changed = [i for i, (now, before) in enumerate(zip(counts, seen)) if now > before]
        seen[:] = counts
        assert len(changed) == 1, f"one request, served by boxes {changed}"
        return changed[0]

    seen = [chats_served(b, ca) for b in boxes]
    landed: dict[int, list[int]] = {}
    for conv in range(4):
        messages = [{"role": "system", "content": f"You are assistant number {conv}. " + "Be brief and kind. " * 30}]
        for turn in range(3):
            messages.append({"role": "user", "content": f"Question {turn} of conversation {conv}?"})
            answer = client.chat.completions.create(model=CHAT_MODEL, messages=messages, max_tokens=3)
            messages.append({"role": "assistant", "content": answer.choices[0].message.content or ""})
            landed.setdefault(conv, []).append(served_by())
    assert all(len(set(turns)) == 1 for turns in landed.values()), landed


def test_a_key_revoked_on_the_boxes_is_refused_through_the_router(router, boxes, ca):
    key = subprocess.run([sys.executable, "-m", "appliance", "keys", "create", "short-lived", "--state-dir",
                          str(boxes[0].state_dir)], capture_output=True, text=True, check=True).stdout.split()[-1]
    import_key(boxes[1], key)
    mine = openai.OpenAI(base_url=f"{router.url}/v1", api_key=key, max_retries=0, timeout=60)
    assert mine.embeddings.create(model=EMBED_MODEL, input="hi").data
    key_id = key.split("-")[2]
    for box in boxes:
        subprocess.run([sys.executable, "-m", "appliance", "keys", "revoke", key_id, "--state-dir",
                        str(box.state_dir)], check=True, capture_output=True)
    for _ in range(4):
        with pytest.raises(openai.AuthenticationError):
            wait_until(lambda: mine.embeddings.create(model=EMBED_MODEL, input="hi") and False, timeout=5,
                       what="the revoked key to be refused", interval=0.2)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{router.url}/v1", api_key="sk-appl-deadbeef-nope", max_retries=0).models.list()


def test_a_box_killed_mid_load_costs_no_request_and_comes_back_after_restart(client, boxes, ca, default_store):
    a, b = boxes
    port = b.url.rpartition(":")[2]
    done: list[int] = []

    def one(i: int) -> str:
        r = client.chat.completions.create(model=CHAT_MODEL, max_tokens=8, messages=[
            {"role": "user", "content": f"Load request {i}: name a colour."}])
        done.append(i)
        return r.choices[0].message.content or ""

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(24)]
        wait_until(lambda: len(done) >= 4, timeout=120, what="the load to get going")
        os.kill(b.proc.pid, signal.SIGKILL)
        results = [f.exception() for f in futures]
    assert [r for r in results if r is not None] == []
    b.proc.wait(10)

    cert, key = ca.folder / "box-b.pem", ca.folder / "box-b.key"
    back = start_server(default_store, b.state_dir, port=int(port), scheme="https",
                        env={"APPLIANCE_TLS_CERT": str(cert), "APPLIANCE_TLS_KEY": str(key)})
    boxes[1] = back
    served = chats_served(back, ca)
    n = iter(range(100_000))

    def routed_to_b() -> bool:
        """Four new prompts at once: cache_aware gives a new prompt to the least busy box, and every tie to one box.

        One prompt at a time would always go to that box, which is the restarted one after only about half the
        router starts; overlapping prompts reach every box the router counts as available (healthy, breaker
        admitting requests).
        """
        with ThreadPoolExecutor(4) as overlap:
            list(overlap.map(lambda i: client.chat.completions.create(model=CHAT_MODEL, max_tokens=8, messages=[
                {"role": "user", "content": f"{hashlib.sha256(str(i).encode()).hexdigest()} after the restart"}]),
                [next(n) for _ in range(4)]))
        return chats_served(back, ca) > served

    wait_until(routed_to_b, timeout=120, what="the restarted box to get requests through the router", interval=0.2)


def test_a_box_that_is_not_ready_is_skipped(default_store, boxes, ca, tmp_path):
    broken = tmp_path / "store"
    broken.mkdir()
    for entry in default_store.iterdir():
        if entry.name != "index.json":
            (broken / entry.name).symlink_to(entry)
    (broken / "index.json").write_text((default_store / "index.json").read_text() + " ")  # breaks the signature
    failed = start_box(broken, tmp_path / "failed", ca, "box-failed")
    router = None
    try:
        assert httpx.get(f"{failed.url}/health", verify=ca.context()).status_code == 503
        import_key(failed, boxes[0].key)
        router = start_router([boxes[0].url, failed.url], ca.pem, tmp_path / "router.log")
        mine = openai.OpenAI(base_url=f"{router.url}/v1", api_key=boxes[0].key, max_retries=0, timeout=60)
        for i in range(6):
            mine.chat.completions.create(model=CHAT_MODEL, max_tokens=2,
                                         messages=[{"role": "user", "content": f"Skip test {i} {'y' * i}"}])
        assert chats_served(failed, ca) == 0
    finally:
        if router is not None:
            stop_process(router.proc, 10)
        stop_server(failed)


def test_a_box_certificate_outside_the_given_ca_is_refused_before_the_router_starts(boxes, tmp_path):
    other = CustomerCA(tmp_path / "other", "Someone else's CA")
    out = subprocess.run([sys.executable, "-m", "appliance", "cluster", boxes[0].url, "--ca", str(other.pem),
                          "--dry-run"], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "not trusted" in out.stderr and "--ca" in out.stderr
