"""Carry a GGUF's quantized blocks into the ONNX graph as MatMulNBits, bit for bit.

SmolLM2 ships as Q4_1 (blocks of 32: w = d*q + m) with a Q8_0 embedding
(w = d*q). Re-quantizing the dequantized fp32 weights to int4 stacks a
second rounding error on the first and costs a tiny model most of its
greedy agreement. MatMulNBits with block size 32 can hold both formats
exactly (Q4_1 as scale d and float zero point -m/d; Q8_0 as 8-bit with zero
point 128), so the engine runs the very weights the GGUF was published with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

BLOCK = 32


@dataclass
class Blocks:
    """One weight in MatMulNBits layout: [N, K/32, bytes per block] plus scales and zero points."""

    bits: int
    packed: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray  # implied by MatMulNBits' defaults (8 for 4 bits, 128 for 8 bits)
    n: int
    k: int
    offsets: np.ndarray | None = None  # [N, K/32] per-block additive term (Q4_1's min, shifted)

    def dequantize(self) -> np.ndarray:
        """[N, K] fp32, for checking the transcoding against the reference weights."""
        if self.bits == 4:
            lo, hi = self.packed & 0x0F, self.packed >> 4
            q = np.stack([lo, hi], -1).reshape(self.n, -1, BLOCK).astype(np.float32)
        else:
            q = self.packed.reshape(self.n, -1, BLOCK).astype(np.float32)
        s = self.scales.reshape(self.n, -1, 1)
        zp = self.zero_points.reshape(self.n, -1, 1).astype(np.float32)
        w = (q - zp) * s
        if self.offsets is not None:
            w = w + self.offsets.reshape(self.n, -1, 1)
        return w.reshape(self.n, self.k)


def q4_1_blocks(raw: np.ndarray, k: int) -> Blocks:
    n = raw.shape[0]
    blocks = raw.reshape(n, k // BLOCK, 20)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[..., 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # GGUF: element j in low nibbles, j+16 in high
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)  # MatMulNBits: pairs in one byte
    # MatMulNBits without zero points reads d*(q-8); the block's remaining offset m+8d goes to ``offsets``
    return Blocks(4, packed, d, np.full(d.shape, 8, np.uint8), n, k, offsets=(m + 8 * d).astype(np.float32))


def q8_0_blocks(raw: np.ndarray, k: int) -> Blocks:
    n = raw.shape[0]
    blocks = raw.reshape(n, k // BLOCK, 34)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    q = blocks[..., 2:34].view(np.int8).astype(np.int16) + 128
    return Blocks(8, q.astype(np.uint8), d, np.full(d.shape, 128, np.uint8), n, k)


def unpermute_rows(n_rows: int, n_head: int) -> np.ndarray:
    """Row order that undoes llama.cpp's q/k permutation for rotary halves (as transformers does)."""
    idx = np.arange(n_rows)
    return idx.reshape(n_head, n_rows // n_head // 2, 2).swapaxes(1, 2).reshape(n_rows)


_LAYER = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/(\w+)/MatMul$")
_GGUF_NAME = {"o_proj": "attn_output", "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def _gguf_weights(path: Path) -> dict[str, tuple[str, np.ndarray, int]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, np.asarray(t.data), int(t.shape[0])) for t in reader.tensors}


def _blocks(entry: tuple[str, np.ndarray, int]) -> Blocks | None:
    kind, raw, k = entry
    if kind == "Q4_1":
        return q4_1_blocks(raw, k)
    if kind == "Q8_0":
        return q8_0_blocks(raw, k)
    return None


def _take_rows(b: Blocks, rows: np.ndarray) -> Blocks:
    return Blocks(b.bits, b.packed[rows], b.scales[rows], b.zero_points[rows], b.n, b.k,
                  None if b.offsets is None else b.offsets[rows])


def _concat(parts: list[Blocks]) -> Blocks:
    offsets = None if parts[0].offsets is None else np.concatenate([p.offsets for p in parts])
    return Blocks(parts[0].bits, np.concatenate([p.packed for p in parts]),
                  np.concatenate([p.scales for p in parts]), np.concatenate([p.zero_points for p in parts]),
                  sum(p.n for p in parts), parts[0].k, offsets)


def weights_for_node(name: str, gguf: dict, n_head: int, n_kv_head: int) -> Blocks | None:
    """The GGUF blocks that hold one MatMul of the builder's graph, in its output order."""
    if name == "/lm_head/MatMul":
        entry = gguf.get("output.weight") or gguf.get("token_embd.weight")
        return _blocks(entry) if entry else None
    m = _LAYER.match(name)
    if not m:
        return None
    layer, _, proj = m.groups()
    if proj == "qkv_proj":
        q, k, v = (gguf.get(f"blk.{layer}.attn_{x}.weight") for x in "qkv")
        parts = [_blocks(e) if e else None for e in (q, k, v)]
        if any(p is None for p in parts) or len({p.bits for p in parts}) != 1:
            return None
        parts[0] = _take_rows(parts[0], unpermute_rows(parts[0].n, n_head))
        parts[1] = _take_rows(parts[1], unpermute_rows(parts[1].n, n_kv_head))
        return _concat(parts)
    entry = gguf.get(f"blk.{layer}.{_GGUF_NAME.get(proj, proj)}.weight")
    return _blocks(entry) if entry else None


def _block_sum_nodes(graph, x: str, out: str, k: int) -> list:
    """x[..., K] -> sums over each block of 32 inputs, [..., K/32]; shared by all MatMuls reading x."""
    shape = f"{out}/shape"
    if not any(i.name == "/block_sums/shape" for i in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.array([0, 0, -1, BLOCK], np.int64), "/block_sums/shape"))
        graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "/block_sums/axes"))
    del shape
    return [
        helper.make_node("Reshape", [x, "/block_sums/shape"], [f"{out}/blocks"], name=f"{out}/Reshape"),
        helper.make_node("ReduceSum", [f"{out}/blocks", "/block_sums/axes"], [out], name=f"{out}/ReduceSum",
                         keepdims=0),
    ]


def transcode(model_path: Path, gguf_path: Path, out: Path, n_head: int, n_kv_head: int,
              accuracy_level: int, tolerance: float = 1e-5) -> tuple[int, int]:
    """Replace each MatMul whose weight the GGUF holds quantized; returns (replaced, left fp32).

    Every replaced weight is dequantized back and compared with the fp32
    weight the exporter wrote, so a layout mistake fails the build here.
    """
    model = onnx.load(str(model_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    gguf = _gguf_weights(gguf_path)
    replaced = kept = 0
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    new_nodes = []
    block_sums: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        blocks = weights_for_node(node.name, gguf, n_head, n_kv_head)
        weight = numpy_helper.to_array(inits[node.input[1]])  # [K, N]
        if blocks is None or blocks.k != weight.shape[0] or blocks.n != weight.shape[1]:
            kept += 1
            new_nodes.append(node)
            continue
        err = float(np.abs(blocks.dequantize() - weight.T).max())
        if err > tolerance * max(1.0, float(np.abs(weight).max())):
            raise ValueError(f"{node.name}: GGUF blocks differ from the exported weight by {err}")
        base = node.input[1].removesuffix(".weight")
        names = [f"{base}.qweight", f"{base}.scales"]
        if uses[node.input[1]] == 1:  # a tied embedding still reads the fp32 weight
            graph.initializer.remove(inits.pop(node.input[1]))
        graph.initializer.extend([
            numpy_helper.from_array(blocks.packed.reshape(blocks.n, blocks.k // BLOCK, -1), names[0]),
            numpy_helper.from_array(blocks.scales.reshape(-1), names[1]),
        ])
        x, y = node.input[0], node.output[0]
        main_out = y if blocks.offsets is None else f"{node.name}NBits/output_0"
        new_nodes.append(helper.make_node(
            "MatMulNBits", [x, *names], [main_out], name=node.name + "NBits",
            domain="com.microsoft", K=blocks.k, N=blocks.n, bits=blocks.bits, block_size=BLOCK,
            accuracy_level=accuracy_level,
        ))
        if blocks.offsets is not None:
            sums = block_sums.get(x)
            if sums is None:
                sums = block_sums[x] = f"{x}/block_sums"
                new_nodes.extend(_block_sum_nodes(graph, x, sums, blocks.k))
            offsets = f"{base}.block_offsets"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(blocks.offsets.T), offsets))
            new_nodes.append(helper.make_node("MatMul", [sums, offsets], [f"{node.name}NBits/offset"],
                                              name=f"{node.name}NBits/OffsetMatMul"))
            new_nodes.append(helper.make_node("Add", [main_out, f"{node.name}NBits/offset"], [y],
                                              name=f"{node.name}NBits/OffsetAdd"))
        replaced += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
              location=out.name + ".data", size_threshold=1024)
    return replaced, kept
