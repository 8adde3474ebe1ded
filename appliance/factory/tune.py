"""SKU tuning for the CPU: weight quantization as the profile says, then ORT graph optimisation saved to disk.

Everything costly happens here, in the factory; the box loads the result
with optimisation off, so start-up does no graph work.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import onnxruntime as ort

from appliance.sku.profiles import SkuProfile

_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def quantize_weights(src: Path, dst: Path, precision: str, profile: SkuProfile, task: str) -> Path:
    """int4/int8 block-wise weight-only MatMulNBits for decoders; dynamic int8 for encoders; fp32 unchanged."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    data_name = dst.name + ".data"
    if precision == "fp32":
        model = onnx.load(str(src))
    elif task == "chat" and precision in ("int4", "int8"):
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
        q = MatMulNBitsQuantizer(
            onnx.load(str(src)),
            bits=4 if precision == "int4" else 8,
            block_size=profile.tuning.int4_block_size,
            is_symmetric=True,
            accuracy_level=profile.tuning.int4_accuracy_level,
        )
        q.process()
        model = q.model.model
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        return dst
    else:
        raise ValueError(f"precision {precision} for task {task} is not built on {profile.name}")
    onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name,
              size_threshold=1024)
    return dst


def optimize_graph(src: Path, dst: Path, profile: SkuProfile) -> Path:
    """Let onnxruntime fuse and lay out the graph for this CPU and save what it produced."""
    so = ort.SessionOptions()
    so.graph_optimization_level = _LEVELS[profile.tuning.graph_optimization]
    so.optimized_model_filepath = str(dst)
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", dst.name + ".data")
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst
