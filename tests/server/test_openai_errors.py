"""Every refusal is a 4xx in OpenAI's error shape, so the SDK raises the right exception with our message."""

from __future__ import annotations

import subprocess
import sys

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import CHAT_MODEL, EMBED_MODEL, create_key, needs_avx512
from wait import wait_until

pytestmark = needs_avx512

SEEN: list[tuple[str, str, int]] = []  # (method, url, status) of every response in this module


def _record(response: httpx.Response) -> None:
    SEEN.append((response.request.method, str(response.request.url), response.status_code))


@pytest.fixture(scope="module")
def sdk(server):
    http = httpx.Client(event_hooks={"response": [_record]}, timeout=120)
    yield OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0, http_client=http)
    http.close()


@pytest.fixture(scope="module")
def raw(server):
    with httpx.Client(base_url=server.url, event_hooks={"response": [_record]}, timeout=120) as c:
        yield c


def _server_errors(server) -> dict[str, float]:
    """appliance_requests_total lines with a 5xx status, from the server's own counter."""
    text = httpx.get(f"{server.url}/metrics", headers=server.headers(), timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("appliance_requests_total{") and 'status="5' in line:
            head, _, value = line.rpartition(" ")
            out[head] = float(value)
    return out


@pytest.fixture(autouse=True)
def _never_5xx(server):
    """No test makes the server answer 5xx: not as this module's clients saw it, nor by the server's own counter.

    The counter also catches 5xx the clients never saw (a request that died
    before answering). It is compared per test, against a baseline taken
    just before, so the check holds whichever tests run and in any order (the
    fixture's own /readyz polls may see 503 while loading).
    """
    start = len(SEEN)
    before = _server_errors(server)
    yield
    bad = [s for s in SEEN[start:] if s[2] >= 500]
    assert not bad, f"server errors: {bad}"
    assert _server_errors(server) == before


def _error(resp: httpx.Response, status: int) -> dict:
    """Assert the OpenAI error shape and return its 'error' object."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    return err


def _chat(raw: httpx.Client, server, body: dict, headers: dict | None = None) -> httpx.Response:
    return raw.post("/v1/chat/completions", json=body, headers=server.headers() if headers is None else headers)


def _wait_key_active(raw: httpx.Client, key: str) -> None:
    """A key created by the CLI reaches the running server without a restart; /v1/usage counts no rate limit."""
    wait_until(lambda: raw.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).status_code == 200,
               timeout=30, what="the server to accept the new key", interval=0.2)


MSG = [{"role": "user", "content": "Say hi."}]


# -- unknown or wrong models ------------------------------------------------------------------------

def test_unknown_chat_model(sdk):
    with pytest.raises(openai.NotFoundError) as ei:
        sdk.chat.completions.create(model="no-such-model", messages=MSG, max_tokens=2)
    e = ei.value
    assert e.status_code == 404
    assert "no-such-model" in e.message
    assert e.code == "model_not_found" and e.param == "model"
    assert e.type == "not_found_error"


def test_unknown_completions_model(sdk):
    with pytest.raises(openai.NotFoundError) as ei:
        sdk.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
    assert ei.value.status_code == 404 and "no-such-model" in ei.value.message


def test_embeddings_model_on_chat(sdk):
    with pytest.raises(openai.NotFoundError) as ei:
        sdk.chat.completions.create(model=EMBED_MODEL, messages=MSG, max_tokens=2)
    assert ei.value.status_code == 404
    assert EMBED_MODEL in ei.value.message and "embeddings" in ei.value.message


def test_unknown_embeddings_model(sdk):
    with pytest.raises(openai.NotFoundError) as ei:
        sdk.embeddings.create(model="no-such-embedder", input="hi")
    assert ei.value.status_code == 404
    assert "no-such-embedder" in ei.value.message and ei.value.code == "model_not_found"


def test_chat_model_on_embeddings(sdk):
    with pytest.raises(openai.NotFoundError) as ei:
        sdk.embeddings.create(model=CHAT_MODEL, input="hi")
    assert ei.value.status_code == 404
    assert CHAT_MODEL in ei.value.message and "chat model" in ei.value.message


# -- context length ---------------------------------------------------------------------------------

def test_prompt_plus_max_tokens_over_context(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hello " * 100}],
                                    max_tokens=2000)
    e = ei.value
    assert e.status_code == 400 and e.code == "context_length_exceeded"
    assert "2048" in e.message and e.param == "max_tokens"


def test_max_completion_tokens_over_context(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=MSG, max_completion_tokens=5000)
    assert ei.value.code == "context_length_exceeded" and ei.value.param == "max_completion_tokens"


def test_huge_prompt_alone(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hello " * 3000}])
    assert ei.value.status_code == 400 and ei.value.code == "context_length_exceeded"
    assert "2048" in ei.value.message


def test_huge_prompt_completions(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.completions.create(model=CHAT_MODEL, prompt="hello " * 3000)
    assert ei.value.status_code == 400 and ei.value.code == "context_length_exceeded"


# -- malformed requests -----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("temperature", "hot"),
    ("temperature", 7),
    ("max_tokens", -1),
    ("max_tokens", 0),
    ("max_tokens", "many"),
    ("messages", "hi"),
    ("messages", [{"content": "no role"}]),
    ("messages", [{"role": "wizard", "content": "hi"}]),
    ("top_p", 0),
    ("stream", "perhaps"),
    ("stop", ["a", "b", "c", "d", "e"]),
])
def test_bad_field_is_400_naming_it(raw, server, field, value):
    err = _error(_chat(raw, server, {"model": CHAT_MODEL, "messages": MSG, "max_tokens": 2, field: value}), 400)
    assert err["type"] == "invalid_request_error"
    assert field in err["message"] and (err["param"] or "").startswith(field)


def test_bad_type_through_sdk(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=MSG, temperature="hot")  # type: ignore[arg-type]
    assert ei.value.status_code == 400 and "temperature" in ei.value.message


def test_missing_required_fields(raw, server):
    err = _error(_chat(raw, server, {"model": CHAT_MODEL}), 400)
    assert "messages" in err["message"]
    err = _error(_chat(raw, server, {"messages": MSG}), 400)
    assert "model" in err["message"]
    err = _error(raw.post("/v1/embeddings", json={"model": EMBED_MODEL}, headers=server.headers()), 400)
    assert "input" in err["message"]


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2", b"\xff\xfe"])
def test_invalid_json_body(raw, server, body):
    resp = raw.post("/v1/chat/completions", content=body,
                    headers={**server.headers(), "Content-Type": "application/json"})
    _error(resp, 400)


def test_json_not_an_object(raw, server):
    resp = raw.post("/v1/chat/completions", json=[1, 2, 3], headers=server.headers())
    _error(resp, 400)
    resp = raw.post("/v1/embeddings", json="hello", headers=server.headers())
    _error(resp, 400)


def test_empty_messages(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=[], max_tokens=2)
    assert ei.value.status_code == 400 and "messages" in ei.value.message and ei.value.param == "messages"


def test_n_beyond_the_limit(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=MSG, max_tokens=2, n=17)
    e = ei.value
    assert e.status_code == 400 and e.param == "n"


def test_unsupported_options(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.completions.create(model=CHAT_MODEL, prompt="def f():", suffix="return 1", max_tokens=2)
    assert ei.value.param == "suffix"
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.completions.create(model=CHAT_MODEL, prompt="a", max_tokens=2, best_of=3)
    assert ei.value.param == "best_of"
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.completions.create(model=CHAT_MODEL, prompt="a", max_tokens=2, echo=True, logprobs=1)
    assert ei.value.param == "echo"
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=MSG, max_tokens=2, functions=[{"name": "f"}])
    assert ei.value.param == "functions" and "tools" in ei.value.message
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.completions.create(model=CHAT_MODEL, prompt="", max_tokens=2)
    assert "prompt" in ei.value.message
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.completions.create(model=CHAT_MODEL, prompt=[1, 99999999], max_tokens=2)
    assert ei.value.param == "prompt" and "vocabulary" in ei.value.message


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", b'{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
     % CHAT_MODEL.encode()),
    ("/v1/chat/completions", b'{"model": "%s", "messages": [{"role": "user", "content": [{"type": "text", '
     b'"text": "\\udfff"}]}]}' % CHAT_MODEL.encode()),
    ("/v1/chat/completions", b'{"model": "x\\ud800", "messages": [{"role": "user", "content": "hi"}]}'),
    ("/v1/completions", b'{"model": "%s", "prompt": "\\ud800"}' % CHAT_MODEL.encode()),
    ("/v1/embeddings", b'{"model": "%s", "input": ["ok", "\\ud800"]}' % EMBED_MODEL.encode()),
    ("/v1/embeddings", b'{"model": "x\\ud800", "input": "hi"}'),
])
def test_lone_surrogate_is_400(raw, server, path, body):
    """Valid JSON may escape a lone UTF-16 surrogate; no tokenizer takes it and it cannot be echoed as UTF-8."""
    err = _error(raw.post(path, content=body, headers={**server.headers(), "Content-Type": "application/json"}),
                 400)
    assert "Unicode" in err["message"]


# -- embeddings input -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [[], "", ["ok", ""]])
def test_empty_embeddings_input(sdk, value):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.embeddings.create(model=EMBED_MODEL, input=value, encoding_format="float")
    assert ei.value.status_code == 400 and "input" in ei.value.message and ei.value.param == "input"


def test_embeddings_token_ids_outside_the_vocabulary(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.embeddings.create(model=EMBED_MODEL, input=[1, 2, 10**6], encoding_format="float")
    assert ei.value.param == "input" and "vocabulary" in ei.value.message


def test_embeddings_wrong_dimensions(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.embeddings.create(model=EMBED_MODEL, input="hi", dimensions=128, encoding_format="float")
    assert "dimensions" in ei.value.message and "384" in ei.value.message


def test_embeddings_over_long_input(sdk):
    with pytest.raises(openai.BadRequestError) as ei:
        sdk.embeddings.create(model=EMBED_MODEL, input=["short", "word " * 400], encoding_format="float")
    e = ei.value
    assert e.status_code == 400 and e.code == "context_length_exceeded"
    assert "input[1]" in e.message and "256" in e.message


# -- authentication ---------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}])
def test_missing_key(raw, headers):
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"),
                         ("GET", "/v1/usage")):
        kw = {"json": {"model": CHAT_MODEL, "messages": MSG}} if method == "POST" else {}
        err = _error(raw.request(method, path, headers=headers, **kw), 401)
        assert "API key" in err["message"] and err["type"] == "authentication_error"


def test_wrong_key(sdk, server):
    bad = sdk.with_options(api_key="sk-appl-deadbeef-notthesecret")
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.models.list()
    assert ei.value.status_code == 401 and "API key" in ei.value.message
    right_id_wrong_secret = server.key.rsplit("-", 1)[0] + "-x" + server.key.rsplit("-", 1)[1]
    with pytest.raises(openai.AuthenticationError):
        sdk.with_options(api_key=right_id_wrong_secret).chat.completions.create(model=CHAT_MODEL, messages=MSG,
                                                                                 max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        sdk.with_options(api_key="not-even-a-key").embeddings.create(model=EMBED_MODEL, input="hi")


def test_revoked_key(sdk, raw, server):
    key = create_key(server.state_dir, "to-revoke")
    _wait_key_active(raw, key)
    mine = sdk.with_options(api_key=key)
    assert mine.models.list().data
    key_id = key.removeprefix("sk-appl-").split("-", 1)[0]
    listing = subprocess.run([sys.executable, "-m", "appliance", "keys", "list", "--state-dir", str(server.state_dir)],
                             capture_output=True, text=True, check=True).stdout
    assert key_id in listing
    subprocess.run([sys.executable, "-m", "appliance", "keys", "revoke", key_id, "--state-dir",
                    str(server.state_dir)], capture_output=True, text=True, check=True)
    wait_until(lambda: raw.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401,
               timeout=30, what="the server to refuse the revoked key", interval=0.1)
    with pytest.raises(openai.AuthenticationError) as ei:
        mine.chat.completions.create(model=CHAT_MODEL, messages=MSG, max_tokens=2)
    assert ei.value.status_code == 401 and "revoked" in ei.value.message
    assert sdk.models.list().data  # the server's own key is untouched


# -- limits -----------------------------------------------------------------------------------------

def test_rate_limit(sdk, raw, server):
    key = create_key(server.state_dir, "rate-limited", "--rate-limit", "2")
    _wait_key_active(raw, key)
    mine = sdk.with_options(api_key=key)
    mine.models.list()
    mine.embeddings.create(model=EMBED_MODEL, input="hi", encoding_format="float")
    with pytest.raises(openai.RateLimitError) as ei:
        mine.models.list()
    e = ei.value
    assert e.status_code == 429 and "rate limit" in e.message and "2" in e.message
    assert e.code == "rate_limit"
    assert 1 <= int(e.response.headers["retry-after"]) <= 60
    with pytest.raises(openai.RateLimitError):
        mine.chat.completions.create(model=CHAT_MODEL, messages=MSG, max_tokens=2)
    assert sdk.models.list().data  # other keys are not limited


def test_token_quota(sdk, raw, server):
    key = create_key(server.state_dir, "quota", "--token-quota", "10")
    _wait_key_active(raw, key)
    mine = sdk.with_options(api_key=key)
    r = mine.chat.completions.create(model=CHAT_MODEL, messages=MSG, max_tokens=2)
    assert r.usage.total_tokens > 10
    with pytest.raises(openai.RateLimitError) as ei:
        mine.chat.completions.create(model=CHAT_MODEL, messages=MSG, max_tokens=2)
    e = ei.value
    assert e.status_code == 429 and "quota" in e.message and "10" in e.message and e.code == "quota"
    with pytest.raises(openai.RateLimitError):
        mine.embeddings.create(model=EMBED_MODEL, input="hi")
    usage = raw.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    assert usage.status_code == 200 and usage.json()["token_quota"] == 10


# -- ops endpoints ----------------------------------------------------------------------------------

def test_ops_endpoints_auth(raw, server):
    assert raw.get("/healthz").status_code == 200
    assert raw.get("/healthz").json() == {"status": "alive"}
    for path in ("/readyz", "/metrics", "/health/monitor"):
        _error(raw.get(path, headers={"Authorization": "Bearer sk-appl-deadbeef-wrong"}), 401)
        assert raw.get(path, headers=server.headers()).status_code == 200
    for path in ("/metrics", "/health/monitor"):
        _error(raw.get(path), 401)
    for path in ("/health", "/readyz"):  # the probes: status code only, no credentials
        r = raw.get(path)
        assert r.status_code == 200 and r.content == b""


def test_unknown_route_and_method(raw, server):
    _error(raw.get("/v1/nothing-here", headers=server.headers()), 404)
    _error(raw.get("/v1/chat/completions", headers=server.headers()), 405)
