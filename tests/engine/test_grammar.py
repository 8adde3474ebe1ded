"""Grammar masks (llguidance): outputs drawn under a schema's mask always parse and validate; bad schemas say why."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

import tiny_vocab
from appliance.engine.grammar import GrammarError, MaskBatch, closed
from appliance.engine.sampling import Sampler, SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "tag": {"type": "string", "enum": ["ab", "cd", "xyz"]},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 3},
        "inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    },
    "required": ["id", "tag", "items", "inner"],
}


@pytest.fixture(scope="module")
def grammars():
    return tiny_vocab.grammars()


def walk(constraint, rng, max_tokens=200) -> list[int]:
    """Random tokens, each drawn uniformly from what the mask allows, until the end-of-sequence token."""
    sampler = Sampler(SamplingParams(temperature=1.0, seed=int(rng.integers(1 << 30))))
    out = []
    for _ in range(max_tokens):
        constraint.compute()
        token = sampler.choose(np.zeros(tiny_vocab.SIZE, np.float32), constraint.allowed()).token
        assert constraint.accept(token), constraint.error
        if token == tiny_vocab.EOS:
            return out
        out.append(token)
    raise AssertionError(f"no end after {max_tokens} tokens: {tiny_vocab.decode(out)!r}")


def test_random_walks_under_the_mask_always_give_valid_json(grammars):
    grammar = grammars.json_schema(SCHEMA)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(25):
        text = tiny_vocab.decode(walk(grammar.start(), rng, 400))
        value = json.loads(text)
        jsonschema.validate(value, SCHEMA)
        assert set(value) == set(SCHEMA["properties"])  # closed: no invented keys
        seen.add(value["tag"])
    assert len(seen) > 1  # the walks really explored


def test_json_object_allows_any_object_and_only_objects(grammars):
    g = grammars.json_schema(None)
    ok = g.start()
    ids = tiny_vocab.encode('{"a": [1, 2], "b": {"c": null}}')
    assert ok.matcher.try_consume_tokens(ids) == len(ids) and ok.matcher.is_accepting()
    arr = g.start()
    arr.compute()
    assert not arr.allowed()[tiny_vocab.VOCAB["["]] and arr.allowed()[tiny_vocab.VOCAB["{"]]


def test_mask_allows_only_eos_once_the_value_is_complete(grammars):
    c = grammars.json_schema({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}).start()
    for t in tiny_vocab.encode('{"a": 7}'):
        c.compute()
        assert c.allowed()[t]
        assert c.accept(t)
    c.compute()
    assert np.flatnonzero(c.allowed()).tolist() == [tiny_vocab.EOS]


@pytest.mark.parametrize(("schema", "problem"), [
    ({"type": "frobnicate"}, "frobnicate"),
    ({"type": "string", "pattern": "("}, "regex"),
    ({"$ref": "#/definitions/missing"}, "missing"),
    ({"type": "integer", "minimum": "x"}, "minimum"),
])
def test_invalid_schema_names_the_problem(grammars, schema, problem):
    with pytest.raises(GrammarError, match=problem):
        grammars.json_schema(schema)


def test_closed_adds_additional_properties_false_where_properties_are_listed():
    schema = {"type": "object", "properties": {"properties": {"type": "object", "properties": {"x": {}}},
                                               "open": {"type": "object", "additionalProperties": True,
                                                        "properties": {"y": {}}}},
              "$defs": {"d": {"properties": {"z": {}}}}, "anyOf": [{"properties": {"w": {}}}]}
    out = closed(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["properties"]["additionalProperties"] is False  # a property named "properties"
    assert "additionalProperties" not in out["properties"]  # the map of names is not a schema
    assert out["properties"]["open"]["additionalProperties"] is True
    assert out["$defs"]["d"]["additionalProperties"] is False and out["anyOf"][0]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the caller's schema is untouched


def test_mask_batch_gives_each_sequence_its_own_mask(grammars):
    a = grammars.json_schema({"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}).start()
    b = grammars.json_schema({"type": "array", "items": {"type": "boolean"}}).start()
    for t in tiny_vocab.encode('{"k": '):
        assert a.accept(t)
    batch = MaskBatch()
    try:
        batch.start([a, b]).result(timeout=10)
        got_a, got_b = a.allowed().copy(), b.allowed().copy()
    finally:
        batch.close()
    a.compute()
    b.compute()
    assert (got_a == a.allowed()).all() and (got_b == b.allowed()).all()
    digits = [tiny_vocab.VOCAB[d] for d in "0123456789"]
    assert got_a[digits].any() and not got_a[tiny_vocab.VOCAB["["]]
    assert np.flatnonzero(got_b).tolist() == [tiny_vocab.VOCAB["["]]
