"""The attention rewrite: self-attention cut into query slices computes the same thing; cross-attention is kept."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from appliance.factory.slice_attention import QUERY_SLICES, slice_self_attention


def _attention_model(path):
    """x -> self-attention over x's tokens, then cross-attention to encoder_hidden_states (2 heads, dynamic sizes)."""
    rng = np.random.default_rng(0)
    w = {n: numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), n) for n in ("wq", "wk", "wv", "wck")}
    shape = numpy_helper.from_array(np.array([0, 0, 2, 4], np.int64), "heads")
    nodes = []

    def heads(src: str, weight: str, out: str, perm) -> None:
        nodes.extend([helper.make_node("MatMul", [src, weight], [out + "_p"]),
                      helper.make_node("Reshape", [out + "_p", "heads"], [out + "_r"]),
                      helper.make_node("Transpose", [out + "_r"], [out], perm=perm)])

    heads("x", "wq", "q", [0, 2, 1, 3])
    heads("x", "wk", "kt", [0, 2, 3, 1])
    heads("x", "wv", "v", [0, 2, 1, 3])
    heads("encoder_hidden_states", "wck", "ckt", [0, 2, 3, 1])
    heads("encoder_hidden_states", "wv", "cv", [0, 2, 1, 3])
    nodes += [helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Softmax", ["s"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v"], ["o"]),
              helper.make_node("MatMul", ["o", "ckt"], ["cs"]), helper.make_node("Softmax", ["cs"], ["cp"], axis=-1),
              helper.make_node("MatMul", ["cp", "cv"], ["out"])]
    graph = helper.make_graph(
        nodes, "attn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n", 8]),
         helper.make_tensor_value_info("encoder_hidden_states", TensorProto.FLOAT, ["b", 7, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 2, "n", 4])], [*w.values(), shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))


def _run(path, x, ctx):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "encoder_hidden_states": ctx})[0]


def test_self_attention_is_sliced_and_computes_the_same(tmp_path):
    path = tmp_path / "attn.onnx"
    _attention_model(path)
    rng = np.random.default_rng(1)
    inputs = [(rng.standard_normal((2, n, 8)).astype(np.float32), rng.standard_normal((2, 7, 8)).astype(np.float32))
              for n in (64, 100, 8)]  # 100 tokens do not divide into 8 slices: the last one is shorter
    before = [_run(path, *i) for i in inputs]
    assert slice_self_attention(path, "encoder_hidden_states") == 1  # the cross-attention is left whole
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["Softmax"] == QUERY_SLICES + 1 and ops["Split"] == 1
    for i, ref in zip(inputs, before):
        np.testing.assert_allclose(_run(path, *i), ref, rtol=1e-5, atol=1e-6)
    assert slice_self_attention(path, "encoder_hidden_states") == 0  # already sliced: nothing left to do
