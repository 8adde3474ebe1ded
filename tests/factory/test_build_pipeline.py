"""The factory's output: parity recorded and within thresholds, a golden test, sizes, signature."""

import json

from appliance.sku.profiles import load_profile
from appliance.store.manifest import Manifest, StoreIndex

CHAT, EMBED, IMAGE = "smollm2-135m-instruct", "all-minilm-l6-v2", "tiny-sd-seeded"


def _manifest(store, mid) -> Manifest:
    return Manifest.model_validate_json((store / mid / "manifest.json").read_text())


def test_store_layout_and_index(default_store):
    index = StoreIndex.model_validate(json.loads((default_store / "index.json").read_text()))
    assert index.sku == "cpu-x86_64-avx512" and [m.id for m in index.models] == [CHAT, EMBED, IMAGE]
    assert (default_store / "index.sig").stat().st_size == 64


def test_chat_parity_recorded_and_within_thresholds(default_store):
    m = _manifest(default_store, CHAT)
    th = load_profile(m.sku).parity
    fp32, tuned = m.parity
    assert fp32.stage == "export-fp32" and fp32.prompts >= 4 and fp32.tokens_per_prompt == 64
    assert fp32.max_abs_logit_diff <= th.fp32_max_abs_logit
    assert fp32.token_agreement >= th.fp32_min_token_agreement
    assert tuned.stage == "tuned-int4" and tuned.token_agreement >= th.int4_min_token_agreement
    assert 0.0 <= tuned.greedy_prefix_agreement <= 1.0 and fp32.passed and tuned.passed
    assert "exactly" in m.source["weights"]  # the GGUF's own blocks, not a second quantization


def test_chat_engine_is_int4_and_optimised(default_store):
    import onnx

    model = onnx.load(str(default_store / CHAT / "model.onnx"), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulNBits" in ops and "GroupQueryAttention" in ops
    plain = [n.name for n in model.graph.node if n.op_type == "MatMul" and not n.name.endswith("OffsetMatMul")]
    assert plain == []  # every projection runs on quantized blocks; MatMuls left are Q4_1 block offsets
    size = sum(p.stat().st_size for p in (default_store / CHAT).iterdir())
    assert size < 300 * 2**20  # the fp32 export is 540 MB


def test_golden_and_manifest_contents(default_store):
    m = _manifest(default_store, CHAT)
    assert m.golden.messages and 1 <= len(m.golden.expected_tokens) <= 16
    assert m.fingerprint["arch"] == "x86_64"
    assert {"torch", "transformers", "onnxruntime", "onnxruntime-genai"} <= set(m.tools)
    assert m.chat_template and "<|im_start|>" in m.chat_template
    listed = {f.path for f in m.files}
    assert listed == {"model.onnx", "model.onnx.data", "tokenizer.json"}
    e = _manifest(default_store, EMBED)
    assert e.engine.dimensions == 384 and e.parity[-1].min_cosine >= 0.999
    assert len(e.golden.expected_embeddings) == 2
