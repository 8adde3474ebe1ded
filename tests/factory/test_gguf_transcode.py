"""GGUF Q4_1/Q8_0 blocks become MatMulNBits (+ block offsets) that compute exactly the GGUF's dequantized weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize, quantize
from onnx import TensorProto, helper, numpy_helper

from appliance.factory import gguf_transcode as gt

Q4_1, Q8_0, F16 = GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0, GGMLQuantizationType.F16


def _f16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).view(np.uint8).reshape(*values.shape, 2)


def random_q4_1(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Raw Q4_1 rows [n, k/32*20] with arbitrary scales, mins and nibbles (every bit pattern is exercised)."""
    nb = k // 32
    d = _f16_bytes(rng.normal(0, 0.05, (n, nb)))
    m = _f16_bytes(rng.normal(0, 0.2, (n, nb)))
    qs = rng.integers(0, 256, (n, nb, 16), dtype=np.uint8)
    return np.concatenate([d, m, qs], -1).reshape(n, nb * 20)


def random_q8_0(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    nb = k // 32
    d = _f16_bytes(rng.normal(0, 0.02, (n, nb)))
    qs = rng.integers(-128, 128, (n, nb, 32)).astype(np.int8).view(np.uint8)
    return np.concatenate([d, qs], -1).reshape(n, nb * 34)


def close(got: np.ndarray, want: np.ndarray, tol: float = 1e-6) -> None:
    assert got.shape == want.shape
    err = float(np.abs(got - want).max())
    assert err <= tol * max(1.0, float(np.abs(want).max())), err


# -- block layouts ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "k"), [(1, 32), (5, 96), (16, 256)])
def test_q4_1_blocks_dequantize_like_gguf(n, k):
    raw = random_q4_1(np.random.default_rng(n * k), n, k)
    b = gt.q4_1_blocks(raw, k)
    assert (b.bits, b.n, b.k, b.packed.shape, b.packed.dtype) == (4, n, k, (n, k // 32, 16), np.uint8)
    assert (b.zero_points == 8).all() and b.scales.shape == b.offsets.shape == (n, k // 32)
    close(b.dequantize(), dequantize(raw, Q4_1))


@pytest.mark.parametrize(("n", "k"), [(1, 32), (5, 96), (16, 256)])
def test_q8_0_blocks_dequantize_like_gguf(n, k):
    raw = random_q8_0(np.random.default_rng(n + k), n, k)
    b = gt.q8_0_blocks(raw, k)
    assert (b.bits, b.n, b.k, b.packed.shape, b.offsets) == (8, n, k, (n, k // 32, 32), None)
    assert (b.zero_points == 128).all()
    close(b.dequantize(), dequantize(raw, Q8_0))


def test_blocks_of_quantized_real_weights_match_gguf():
    w = np.random.default_rng(1).normal(0, 0.1, (8, 128)).astype(np.float32)
    for qtype, fn in ((Q4_1, gt.q4_1_blocks), (Q8_0, gt.q8_0_blocks)):
        raw = quantize(w, qtype)
        close(fn(raw, 128).dequantize(), dequantize(raw, qtype))


def test_q4_1_nibble_order_and_matmulnbits_packing():
    # GGUF: byte j holds element j (low nibble) and element j+16 (high); MatMulNBits: byte i holds 2i (low), 2i+1
    values = np.array(list(range(16)) + list(range(15, -1, -1)), np.uint8)
    qs = values[:16] | (values[16:] << 4)
    raw = np.concatenate([_f16_bytes(np.array([0.5])).ravel(), _f16_bytes(np.array([-1.25])).ravel(), qs])[None]
    b = gt.q4_1_blocks(raw, 32)
    assert b.packed[0, 0].tolist() == (values[0::2] | (values[1::2] << 4)).tolist()
    assert b.scales[0, 0] == 0.5 and b.offsets[0, 0] == -1.25 + 8 * 0.5
    assert b.dequantize()[0].tolist() == (0.5 * values - 1.25).tolist()


def test_q8_0_bytes_are_offset_by_128():
    qs = np.array([-128, -1, 0, 1, 127] + [3] * 27, np.int8)
    raw = np.concatenate([_f16_bytes(np.array([0.25])).ravel(), qs.view(np.uint8)])[None]
    b = gt.q8_0_blocks(raw, 32)
    assert b.packed[0, 0, :5].tolist() == [0, 127, 128, 129, 255]
    assert b.dequantize()[0].tolist() == (0.25 * qs.astype(np.float32)).tolist()


# -- the q/k row permutation ----------------------------------------------------------------------------

def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's permute of q/k rows (HF order -> GGUF order)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_order(gguf_rows: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama_cpp_permute, built from it (not from the code under test)."""
    where = llama_cpp_permute(np.arange(gguf_rows.shape[0]), n_head)  # GGUF row i is HF row where[i]
    out = np.empty_like(gguf_rows)
    out[where] = gguf_rows
    return out


@pytest.mark.parametrize(("rows", "n_head"), [(8, 1), (16, 2), (48, 3), (64, 8)])
def test_unpermute_rows_undoes_llama_cpp_permute(rows, n_head):
    w = np.random.default_rng(rows).normal(size=(rows, 4))
    assert np.array_equal(llama_cpp_permute(w, n_head)[gt.unpermute_rows(rows, n_head)], w)


# -- whole-graph transcoding, run in onnxruntime -----------------------------------------------------

N_HEAD, N_KV, HEAD_DIM, HIDDEN, FFN, VOCAB = 4, 2, 8, 64, 32, 64


def write_gguf(path: Path, tensors: dict[str, tuple[np.ndarray, GGMLQuantizationType]]) -> None:
    w = GGUFWriter(str(path), "llama")
    for name, (raw, qtype) in tensors.items():
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_model(tmp_path: Path, permuted_export: bool = False) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A GGUF plus an fp32 ONNX graph whose MatMul weights are the GGUF's, dequantized, in HF order."""
    rng = np.random.default_rng(0)
    raw = {
        "blk.0.attn_q.weight": (random_q4_1(rng, N_HEAD * HEAD_DIM, HIDDEN), Q4_1),
        "blk.0.attn_k.weight": (random_q4_1(rng, N_KV * HEAD_DIM, HIDDEN), Q4_1),
        "blk.0.attn_v.weight": (random_q4_1(rng, N_KV * HEAD_DIM, HIDDEN), Q4_1),
        "blk.0.ffn_up.weight": (random_q4_1(rng, FFN, HIDDEN), Q4_1),
        "blk.0.ffn_down.weight": (random_q4_1(rng, HIDDEN, FFN), Q4_1),
        "blk.0.ffn_gate.weight": (random_q4_1(rng, FFN, HIDDEN), Q4_1),  # the graph's gate has another shape
        "blk.0.attn_output.weight": (rng.normal(0, 0.1, (HIDDEN, HIDDEN)).astype(np.float16), F16),
        "token_embd.weight": (random_q8_0(rng, VOCAB, HIDDEN), Q8_0),  # tied: no output.weight
    }
    gguf_path = tmp_path / "tiny.gguf"
    write_gguf(gguf_path, raw)
    deq = {name: (dequantize(r, q) if q != F16 else r.astype(np.float32)) for name, (r, q) in raw.items()}
    q, k = deq["blk.0.attn_q.weight"], deq["blk.0.attn_k.weight"]
    if not permuted_export:
        q, k = hf_order(q, N_HEAD), hf_order(k, N_KV)
    weights = {
        "qkv.weight": np.concatenate([q, k, deq["blk.0.attn_v.weight"]]).T,
        "up.weight": deq["blk.0.ffn_up.weight"].T,
        "down.weight": deq["blk.0.ffn_down.weight"].T,
        "gate.weight": rng.normal(0, 0.1, (HIDDEN, FFN + 8)).astype(np.float32),
        "o.weight": deq["blk.0.attn_output.weight"].T,
        "lm_head.weight": deq["token_embd.weight"].T,
    }
    weights = {name: np.ascontiguousarray(w, np.float32) for name, w in weights.items()}
    mm = [  # (node name, input, weight, output)
        ("/model/layers.0/attn/qkv_proj/MatMul", "x", "qkv.weight", "qkv"),
        ("/model/layers.0/attn/o_proj/MatMul", "x", "o.weight", "o"),
        ("/model/layers.0/mlp/up_proj/MatMul", "x", "up.weight", "up"),
        ("/model/layers.0/mlp/gate_proj/MatMul", "x", "gate.weight", "gate"),
        ("/model/layers.0/mlp/down_proj/MatMul", "up", "down.weight", "down"),
        ("/lm_head/MatMul", "down", "lm_head.weight", "logits"),
    ]
    nodes = [helper.make_node("MatMul", [i, w], [o], name=name) for name, i, w, o in mm]
    nodes.append(helper.make_node("Identity", ["lm_head.weight"], ["tied"], name="tied"))  # a second reader
    shapes = {"qkv": (N_HEAD + 2 * N_KV) * HEAD_DIM, "o": HIDDEN, "up": FFN, "gate": FFN + 8, "down": HIDDEN,
              "logits": VOCAB}
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, "s", d]) for o, d in shapes.items()]
    outputs.append(helper.make_tensor_value_info("tied", TensorProto.FLOAT, [HIDDEN, VOCAB]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", HIDDEN])],
                              outputs, [numpy_helper.from_array(w, name) for name, w in weights.items()])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx_path = tmp_path / "model.onnx"
    onnx.save(model, str(onnx_path))
    return onnx_path, gguf_path, weights


def run_graph(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"x": x})))


def test_transcoded_graph_computes_the_gguf_weights(tmp_path):
    onnx_path, gguf_path, weights = tiny_model(tmp_path)
    out = tmp_path / "quant" / "model.onnx"
    replaced, kept = gt.transcode(onnx_path, gguf_path, out, N_HEAD, N_KV, accuracy_level=0)
    assert (replaced, kept) == (4, 2)  # qkv, up, down, lm_head; gate (shape differs) and o_proj (F16) stay fp32

    model = onnx.load(str(out))
    ops = {n.name: n.op_type for n in model.graph.node}
    for name in ("qkv_proj", "up_proj", "down_proj"):
        assert ops[f"/model/layers.0/{'attn' if name == 'qkv_proj' else 'mlp'}/{name}/MatMulNBits"] == "MatMulNBits"
    assert ops["/lm_head/MatMulNBits"] == "MatMulNBits"
    assert ops["/model/layers.0/mlp/gate_proj/MatMul"] == ops["/model/layers.0/attn/o_proj/MatMul"] == "MatMul"
    inits = {i.name for i in model.graph.initializer}
    assert {"qkv.weight", "up.weight", "down.weight"}.isdisjoint(inits)  # replaced weights are gone
    assert {"lm_head.weight", "gate.weight", "o.weight"} <= inits  # the tied weight is still read by Identity
    bits = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in model.graph.node
            if n.op_type == "MatMulNBits"}
    assert bits["/lm_head/MatMulNBits"] == 8 and bits["/model/layers.0/mlp/up_proj/MatMulNBits"] == 4

    x = np.random.default_rng(5).normal(size=(1, 3, HIDDEN)).astype(np.float32)
    want, got = run_graph(onnx_path, x), run_graph(out, x)
    assert want.keys() == got.keys()
    for name in want:
        close(got[name], want[name], 1e-4)
    # and the fp32 graph itself is x @ the GGUF weights (so the comparison above is against the GGUF)
    close(want["qkv"], x @ weights["qkv.weight"], 1e-5)


def test_a_layout_mistake_fails_the_transcode(tmp_path):
    # the exporter wrote q/k in GGUF (rotary-permuted) order: the dequantized check must refuse it
    onnx_path, gguf_path, _ = tiny_model(tmp_path, permuted_export=True)
    with pytest.raises(ValueError, match="qkv_proj.*differ"):
        gt.transcode(onnx_path, gguf_path, tmp_path / "out" / "model.onnx", N_HEAD, N_KV, accuracy_level=0)


def test_weights_for_node_maps_names_and_falls_back_to_none():
    rng = np.random.default_rng(3)
    q4 = lambda n, k: ("Q4_1", random_q4_1(rng, n, k), k)  # noqa: E731
    g = {"blk.2.attn_q.weight": q4(16, 32), "blk.2.attn_k.weight": q4(8, 32), "blk.2.attn_v.weight": q4(8, 32),
         "blk.2.ffn_down.weight": q4(32, 64), "token_embd.weight": ("Q8_0", random_q8_0(rng, 10, 32), 32),
         "blk.3.attn_q.weight": q4(16, 32), "blk.3.attn_k.weight": ("Q8_0", random_q8_0(rng, 8, 32), 32),
         "blk.3.attn_v.weight": q4(8, 32), "blk.4.ffn_up.weight": ("F16", np.zeros((4, 32), np.float16), 32)}
    qkv = gt.weights_for_node("/model/layers.2/attn/qkv_proj/MatMul", g, 2, 1)
    q, k, v = (dequantize(g[f"blk.2.attn_{x}.weight"][1], Q4_1) for x in "qkv")
    close(qkv.dequantize(), np.concatenate([hf_order(q, 2), hf_order(k, 1), v]))
    down = gt.weights_for_node("/model/layers.2/mlp/down_proj/MatMul", g, 2, 1)
    close(down.dequantize(), dequantize(g["blk.2.ffn_down.weight"][1], Q4_1))
    assert gt.weights_for_node("/lm_head/MatMul", g, 2, 1).bits == 8  # tied to the embedding
    assert gt.weights_for_node("/model/layers.3/attn/qkv_proj/MatMul", g, 2, 1) is None  # mixed bit widths
    assert gt.weights_for_node("/model/layers.4/mlp/up_proj/MatMul", g, 2, 1) is None  # not a quantized type
    assert gt.weights_for_node("/model/layers.5/mlp/up_proj/MatMul", g, 2, 1) is None  # missing
    assert gt.weights_for_node("/model/embed_tokens/Gather", g, 2, 1) is None
