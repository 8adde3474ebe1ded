"""Text-to-image speed: the box's ORT pipeline against diffusers on torch, same model, same machine, same run.

For each size (the store's built sizes, or ``--sizes``):

* ours: ``OrtDiffusion`` on the store's engines (the path the box serves:
  numpy denoising loop over the tuned ONNX UNet, text encoder, VAE decoder);
* diffusers: ``StableDiffusionPipeline.from_pretrained`` on the same source
  folder the factory exported (resolved through the spec, as the factory
  does), fp32 on torch CPU, its scheduler set to the one the box mirrors.

Both get the same prompt, the same initial noise (the box's seeded noise is
handed to diffusers as ``latents``), the same steps and guidance, and the
same thread count. Reported per size: seconds per image (whole request:
text encoding, every denoising step, VAE decode; PNG encoding excluded) and
seconds per denoising step (median gap between step callbacks), each the
median of ``--runs`` runs after one discarded warm-up, runs alternating
between the two pipelines; and the largest pixel difference between their
images, so a speed-up never comes from computing something else.

Results: bench/results/image_gen-<UTC date>.json. See ``--help``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fmt, machine_info, physical_cores, print_table, ratio, resolve_gguf, stat, write_result  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store", type=Path, required=True, help="model store with a text-to-image model")
    p.add_argument("--model", default=None, help="image model id (default: the store's first)")
    p.add_argument("--spec", type=Path, default=REPO / "appliance.toml", help="spec naming the model's source")
    p.add_argument("--sizes", default=None, help="comma list of sizes (default: the model's built sizes)")
    p.add_argument("--steps", type=int, default=0, help="denoising steps (0: the model's default)")
    p.add_argument("--n", type=int, default=1, help="images per request")
    p.add_argument("--threads", type=int, default=physical_cores(), help="threads for both pipelines")
    p.add_argument("--runs", type=int, default=3, help="timed runs per figure (median reported)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--prompt", default="a watercolor of mountains and a lake in autumn")
    p.add_argument("--out", type=Path, default=None, help="result file (default bench/results/image_gen-DATE.json)")
    return p.parse_args(argv)


def find_image_model(store: Path, model_id: str | None):
    from appliance.store.manifest import Manifest

    index = json.loads((store / "index.json").read_text())
    ids = [m["id"] for m in index["models"] if m.get("task") == "text-to-image"]
    model_id = model_id or (ids[0] if ids else None)
    if model_id not in ids:
        raise SystemExit(f"{store} has no text-to-image model {model_id!r}; it has {ids}")
    return store / model_id, Manifest.model_validate_json((store / model_id / "manifest.json").read_text())


def timed(run, steps: int) -> tuple[float, float]:
    """(seconds for the whole call, median seconds between step callbacks)."""
    marks: list[float] = []
    t0 = time.perf_counter()
    run(lambda *_: marks.append(time.perf_counter()))
    total = time.perf_counter() - t0
    gaps = np.diff([t0, *marks])[1:] if len(marks) > 1 else np.array([total / max(steps, 1)])
    return total, float(statistics.median(gaps))


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from appliance.engine.diffusion.pipeline import NoiseSource, OrtDiffusion
    from appliance.factory.diffusion_parity import same_step_noise
    from appliance.factory.export_diffusion import load_pipeline, reference_scheduler
    from appliance.factory.pipeline import _quiet_libraries

    _quiet_libraries()
    torch.set_num_threads(args.threads)
    model_dir, manifest = find_image_model(args.store, args.model)
    cfg = manifest.engine
    src, _ = resolve_gguf(args.spec, manifest.model_id)
    ours = OrtDiffusion(model_dir, cfg, threads=args.threads)
    pipe = load_pipeline(src.path)
    steps = args.steps or cfg.steps
    sizes = args.sizes.split(",") if args.sizes else cfg.sizes
    results, rows = [], [["size", "steps", "ours s/image", "diffusers s/image", "speed-up", "ours s/step",
                          "diffusers s/step", "step speed-up", "max |pixel diff|"]]
    for size in sizes:
        w, h = cfg.size_pixels(size)

        def run_ours(cb):
            run_ours.images = ours.generate(args.prompt, w, h, args.n, args.seed, steps, on_step=cb)

        def run_torch(cb):
            def on_end(_pipe, i, t, kwargs):
                cb()
                return kwargs

            pipe.scheduler = reference_scheduler(pipe, cfg.scheduler.kind)
            noise = NoiseSource(args.seed)
            f = cfg.vae_scale_factor
            latents = torch.from_numpy(noise((args.n, cfg.latent_channels, h // f, w // f)))
            with torch.inference_mode(), same_step_noise(noise):
                run_torch.images = pipe(args.prompt, height=h, width=w, num_inference_steps=steps,
                                        guidance_scale=cfg.guidance_scale, num_images_per_prompt=args.n,
                                        latents=latents, output_type="np", callback_on_step_end=on_end).images

        timed(run_ours, steps)
        timed(run_torch, steps)
        samples = {"ours": [], "diffusers": []}
        for _ in range(args.runs):
            samples["ours"].append(timed(run_ours, steps))
            samples["diffusers"].append(timed(run_torch, steps))
        diff = float(np.abs(run_ours.images - run_torch.images).max())
        per_image = {k: stat([t / args.n for t, _ in v]) for k, v in samples.items()}
        per_step = {k: stat([s for _, s in v]) for k, v in samples.items()}
        entry = {"size": size, "steps": steps, "n": args.n, "scheduler": cfg.scheduler.kind,
                 "guidance_scale": cfg.guidance_scale, "seconds_per_image": per_image, "seconds_per_step": per_step,
                 "speedup_per_image": ratio(per_image["diffusers"]["median"], per_image["ours"]["median"]),
                 "speedup_per_step": ratio(per_step["diffusers"]["median"], per_step["ours"]["median"]),
                 "max_abs_pixel_diff": round(diff, 8)}
        results.append(entry)
        rows.append([size, str(steps), fmt(per_image["ours"]["median"], 3), fmt(per_image["diffusers"]["median"], 3),
                     fmt(entry["speedup_per_image"], 2) + "x", fmt(per_step["ours"]["median"], 4),
                     fmt(per_step["diffusers"]["median"], 4), fmt(entry["speedup_per_step"], 2) + "x",
                     f"{diff:.2g}"])
    print_table(rows)
    path = write_result("image_gen", {
        "benchmark": "image_gen",
        "machine": {**machine_info(), "diffusers": _version("diffusers")},
        "parameters": {"model": manifest.model_id, "seeded_noise_model": cfg.seeded_noise_model,
                       "precision": manifest.precision, "threads": args.threads, "runs": args.runs,
                       "prompt": args.prompt, "seed": args.seed, "sizes": sizes},
        "results": results,
    }, args.out)
    print(f"wrote {path}")


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
