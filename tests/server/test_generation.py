"""A generation job: text deltas that never show a stop string, whole UTF-8 characters, usage charged once."""

from __future__ import annotations

import asyncio
import types

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from appliance.engine.sampling import SamplingParams
from appliance.engine.tokenizer import ChatTokenizer
from appliance.server.api.generation import Job
from appliance.server.openai_errors import ApiError
from appliance.server.scheduler import Generation, TokenEvent


@pytest.fixture(scope="module")
def byte_tokenizer(tmp_path_factory) -> ChatTokenizer:
    """One token per UTF-8 byte, so a character like 'é' arrives in two tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE({ch: i for i, ch in enumerate(alphabet)}, []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return ChatTokenizer(path, None)


class Keys:
    def __init__(self) -> None:
        self.charged: list[tuple[str, int, int]] = []

    def record_usage(self, key_id: str, prompt: int, completion: int) -> None:
        self.charged.append((key_id, prompt, completion))


def _run(tok: ChatTokenizer, text: str, stops: list[str], finish: str = "length", error: str | None = None):
    async def go():
        loop = asyncio.get_running_loop()
        gen = Generation([1, 2, 3], 100, SamplingParams(), loop)
        for t in tok.encode(text):
            gen.events.put_nowait(TokenEvent(t))
        gen.events.put_nowait(TokenEvent(None, finish, error))
        model = types.SimpleNamespace(id="m", tokenizer=tok, scheduler=types.SimpleNamespace(wake=lambda: None))
        keys = Keys()
        job = Job(model, gen, stops, keys, types.SimpleNamespace(id="k1"), "cmpl-1")
        deltas = [d async for d in job.deltas()]
        return job, deltas, keys, gen

    return asyncio.run(go())


def test_stop_string_is_cut_and_never_streamed(byte_tokenizer):
    job, deltas, keys, gen = _run(byte_tokenizer, "Paris is nice. END more", ["END"])
    assert "".join(deltas) == job.text == "Paris is nice. "
    assert not any("E" in d and "N" in d for d in deltas)
    assert job.finish_reason == "stop" and gen.cancelled
    assert keys.charged == [("k1", 3, job.completion_tokens)]


def test_multibyte_characters_arrive_whole(byte_tokenizer):
    job, deltas, _, _ = _run(byte_tokenizer, "café ☕ ok", [])
    assert "".join(deltas) == "café ☕ ok" and all("\ufffd" not in d for d in deltas)
    assert job.finish_reason == "length" and job.completion_tokens == len("café ☕ ok".encode())


def test_eos_counts_as_a_token_and_an_engine_error_is_a_503(byte_tokenizer):
    job, _, _, _ = _run(byte_tokenizer, "ab", [], finish="stop")
    assert (job.finish_reason, job.completion_tokens) == ("stop", 3)
    with pytest.raises(ApiError) as ei:
        _run(byte_tokenizer, "ab", [], finish="error", error="engine error: RuntimeError")
    assert ei.value.status == 503 and "engine error" in ei.value.message


def _run_events(tok: ChatTokenizer, events: list[TokenEvent], stops: list[str]):
    async def go():
        gen = Generation([1, 2, 3], 100, SamplingParams(), asyncio.get_running_loop())
        for e in events:
            gen.events.put_nowait(e)
        model = types.SimpleNamespace(id="m", tokenizer=tok, scheduler=types.SimpleNamespace(wake=lambda: None))
        job = Job(model, gen, stops, Keys(), types.SimpleNamespace(id="k1"), "cmpl-1")
        pieces = []
        async for d in job.deltas():
            pieces.append((d, [t.token for t in job.released()]))
        return job, pieces, job.released()

    return asyncio.run(go())


def test_a_grammar_end_is_a_stop_without_an_eos_token(byte_tokenizer):
    events = [TokenEvent(t) for t in byte_tokenizer.encode("{}")] + [TokenEvent(None, "end")]
    job, _, _ = _run_events(byte_tokenizer, events, [])
    assert (job.finish_reason, job.completion_tokens, job.text) == ("stop", 2, "{}")


def test_logprobs_are_released_with_their_text_and_never_past_a_stop_string(byte_tokenizer):
    ids = byte_tokenizer.encode("ab END cd")
    events = [TokenEvent(t, logprob=-0.5, top=[(t, -0.5)]) for t in ids] + [TokenEvent(None, "length")]
    job, pieces, rest = _run_events(byte_tokenizer, events, ["END"])
    assert job.text == "ab " and job.finish_reason == "stop"
    shown = [t for _, toks in pieces for t in toks] + [t.token for t in rest]
    assert shown == ids[:3]  # 'a', 'b', ' ': the tokens of the text shown, no more
    text_so_far, released = "", []
    for text, toks in pieces:  # a delta never carries the log-probabilities of text not yet shown
        text_so_far += text
        released += toks
        assert text_so_far.startswith(byte_tokenizer.decode(released))
    assert [t.offset for t in job.tokens[:3]] == [0, 1, 2]


def test_a_request_whose_client_went_away_ends_in_a_503_and_is_charged_once(byte_tokenizer):
    """collect() on a job that never finishes (the server stopping, or the client gone) must not build an answer."""
    from appliance.server.api.generation import collect

    async def go():
        gen = Generation([1, 2, 3], 100, SamplingParams(), asyncio.get_running_loop())
        gen.events.put_nowait(TokenEvent(byte_tokenizer.encode("a")[0]))
        model = types.SimpleNamespace(id="m", tokenizer=byte_tokenizer,
                                      scheduler=types.SimpleNamespace(wake=lambda: None))
        keys = Keys()
        job = Job(model, gen, [], keys, types.SimpleNamespace(id="k1"), "cmpl-1")

        async def receive():
            return {"type": "http.disconnect"}

        with pytest.raises(ApiError) as ei:
            await collect([job], types.SimpleNamespace(receive=receive))
        return ei.value, job, keys, gen

    error, job, keys, gen = asyncio.run(go())
    assert error.status == 503 and "cancelled before it finished" in error.message
    assert gen.cancelled and job.finish_reason is None and len(keys.charged) == 1
