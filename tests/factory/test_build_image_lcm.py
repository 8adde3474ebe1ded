"""An LCM-distilled pipeline (UNet with a guidance embedding, few-step LCM sampling) goes through the whole
factory: exported with its timestep_cond input, and the numpy loop checked against diffusers at build time."""

from __future__ import annotations

import subprocess
import sys

import onnx

from appliance.store.manifest import Manifest

SPEC = """
[box]
name = "lcm-box"
sku = "cpu-x86_64-avx512"

[[models]]
id = "tiny-lcm"
task = "text-to-image"
precision = "fp32"
source = { kind = "tiny-diffusers", seed = 1, time_cond_proj_dim = 256 }
image = { sizes = ["64x64"], scheduler = "lcm", steps = 4, guidance_scale = 8.0 }
"""


def test_lcm_distilled_pipeline_builds_with_its_guidance_embedding(tmp_path):
    (tmp_path / "box.toml").write_text(SPEC)
    out = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "appliance", "build", "models", "--spec", str(tmp_path / "box.toml"),
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = Manifest.model_validate_json((out / "tiny-lcm" / "manifest.json").read_text())
    assert m.engine.time_cond_proj_dim == 256 and m.engine.scheduler.kind == "lcm" and m.engine.steps == 4
    unet = onnx.load(str(out / "tiny-lcm" / "unet.onnx"), load_external_data=False)
    assert "timestep_cond" in {i.name for i in unet.graph.input}
    whole = next(p for p in m.parity if p.component == "pipeline")
    assert whole.passed and "lcm x4 guidance 8.0" in whole.shapes[0] and whole.max_abs_diff <= 0.01
    assert all(p.passed for p in m.parity)
