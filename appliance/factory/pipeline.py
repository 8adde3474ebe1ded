"""``appliance build models``: box spec -> sources -> ONNX -> parity -> SKU-tuned, signed store."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from appliance.factory import (
    diffusion_parity,
    emulated_golden,
    export_diffusion,
    export_embeddings,
    export_llm,
    gguf_transcode,
    parity,
    tune,
)
from appliance.factory.sources import LocalSource, default_cache_dir, gguf_to_hf, resolve_source
from appliance.factory.store_writer import file_entries, now_iso, staging_dir, swap_in, write_index, write_manifest
from appliance.engine.cpu_ort import CpuOrtLlm
from appliance.engine.diffusion.pipeline import OrtDiffusion, to_uint8
from appliance.engine.diffusion.thumbnail import thumbnail
from appliance.engine.embeddings import OrtEmbedder
from appliance.engine.greedy import engine_greedy
from appliance.engine.tokenizer import ChatTokenizer
from appliance.errors import ApplianceError, ParityError
from appliance.sku.detect import detect
from appliance.sku.profiles import SkuProfile, load_profile
from appliance.spec import ApplianceSpec, ModelSpec
from appliance.store.manifest import (
    EmbeddingsEngineConfig,
    GoldenTest,
    LlmEngineConfig,
    Manifest,
    ParityFigures,
)
from appliance.store.signing import dev_private_key_path, signing_key_for_build

PARITY_TOKENS = 64
PARITY_CONTEXT = 512
TOOLS = ("appliance", "torch", "transformers", "diffusers", "onnx", "onnxruntime", "onnxruntime-genai", "tokenizers",
         "gguf")


@dataclass
class ModelResult:
    manifest: Manifest
    size_bytes: int
    seconds: float


@dataclass
class BuildContext:
    spec: ApplianceSpec
    profile: SkuProfile
    staging: Path
    work: Path
    cache: Path
    progress: Progress
    fingerprint: dict
    tools: dict[str, str] = field(default_factory=dict)

    def stage(self, task_id, text: str) -> None:
        self.progress.update(task_id, description=text)
        self.progress.advance(task_id)


def tool_versions() -> dict[str, str]:
    out = {}
    for dist in TOOLS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    logging.getLogger("torch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(torch|transformers|onnxscript|copyreg)(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import onnxruntime as ort

    ort.set_default_logger_severity(3)


def _chat_template(hf_dir: Path) -> str | None:
    jinja = hf_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    cfg = hf_dir / "tokenizer_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("chat_template")
    return None


def _check(figures: ParityFigures, model_id: str) -> ParityFigures:
    if not figures.passed:
        raise ParityError(
            f"model {model_id}: {figures.stage} parity out of bounds (token agreement {figures.token_agreement}, "
            f"max |logit diff| {figures.max_abs_logit_diff}, min cosine {figures.min_cosine}; "
            f"thresholds {figures.thresholds}); the engine is not shipped"
        )
    return figures


def _hf_folder(ctx: BuildContext, src: LocalSource) -> Path:
    return gguf_to_hf(src, ctx.cache / "hf") if src.kind == "gguf" else src.path


def _size(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())


def build_chat(ctx: BuildContext, m: ModelSpec, task_id) -> ModelResult:
    t0 = time.monotonic()
    prof = ctx.profile
    ctx.stage(task_id, f"{m.id}: fetching source")
    src = resolve_source(m.source, m.id, ctx.cache)
    ctx.stage(task_id, f"{m.id}: loading weights ({src.kind})")
    hf_dir = _hf_folder(ctx, src)
    work = ctx.work / m.id
    ctx.stage(task_id, f"{m.id}: exporting to ONNX (fp32, KV cache)")
    exported = export_llm.build_onnx(hf_dir, work / "export", work / "export.log", ctx.cache / "builder")
    shape = export_llm.read_decoder_shape(hf_dir)
    template = _chat_template(hf_dir)
    tok = ChatTokenizer(hf_dir / "tokenizer.json", template)
    prompts = parity.chat_prompts(tok, parity.PARITY_PROMPTS)
    ctx.stage(task_id, f"{m.id}: torch reference ({len(prompts)} prompts x {PARITY_TOKENS} tokens)")
    ref = parity.llm_reference(hf_dir, prompts, PARITY_TOKENS)

    chunk = prof.tuning.prefill_chunk
    engine_cfg = LlmEngineConfig(filename="model.onnx", context_length=m.context_length, max_batch=m.max_batch,
                                 prefill_chunk=chunk, threads=prof.tuning.threads, kv_dtype=prof.tuning.kv_dtype,
                                 **shape)
    small = dict(max_batch=len(prompts) + 1, context_length=PARITY_CONTEXT)
    ctx.stage(task_id, f"{m.id}: parity of the fp32 export")
    th = prof.parity
    fp32 = _check(parity.llm_parity(
        CpuOrtLlm(exported.parent, engine_cfg, optimized=False, **small), ref, "export-fp32", "fp32", chunk,
        {"min_token_agreement": th.fp32_min_token_agreement, "max_abs_logit": th.fp32_max_abs_logit}), m.id)

    ctx.stage(task_id, f"{m.id}: tuning for {prof.name} ({m.precision}, graph optimisation {prof.tuning.graph_optimization})")
    model_dir = ctx.staging / m.id
    model_dir.mkdir(parents=True)
    quant = work / "quant" / "model.onnx"
    if src.kind == "gguf" and m.precision == "int4":
        heads = json.loads((hf_dir / "config.json").read_text())["num_attention_heads"]
        gguf_transcode.transcode(exported, src.path, quant, heads, shape["num_kv_heads"],
                                 prof.tuning.int4_accuracy_level)
        weights = "GGUF blocks carried over exactly (Q4_1 -> MatMulNBits int4 + block offsets, Q8_0 -> 8 bit)"
    else:
        tune.quantize_weights(exported, quant, m.precision, prof, m.task)
        weights = f"MatMulNBits {m.precision}, block {prof.tuning.int4_block_size}, symmetric"
    tune.optimize_graph(quant, model_dir / "model.onnx", prof)
    shutil.copy(hf_dir / "tokenizer.json", model_dir / "tokenizer.json")

    ctx.stage(task_id, f"{m.id}: parity of the tuned engine")
    tuned_engine = CpuOrtLlm(model_dir, engine_cfg, **small)
    tuned = _check(parity.llm_parity(tuned_engine, ref, f"tuned-{m.precision}", m.precision, chunk,
                                     {"min_token_agreement": th.min_token_agreement(m.precision)}), m.id)
    golden_ids = tok.encode(tok.render_chat(parity.GOLDEN_MESSAGES))
    golden = engine_greedy(tuned_engine, [golden_ids], parity.GOLDEN_TOKENS, chunk)[0]
    golden_on = None
    if emulated_golden.needed(prof, ctx.fingerprint):
        golden_on = emulated_golden.describe(prof)
        progress_note = f"{m.id}: golden tokens on the SKU's CPU ({golden_on}; minutes)"
        ctx.progress.update(task_id, description=progress_note)
        golden = emulated_golden.golden_tokens(prof, model_dir, engine_cfg, golden_ids, parity.GOLDEN_TOKENS, chunk)

    manifest = Manifest(
        model_id=m.id, task=m.task, precision=m.precision, sku=prof.name, backend=prof.backend,
        fingerprint=ctx.fingerprint, source={**src.description, "weights": weights}, engine=engine_cfg,
        chat_template=template or None,
        files=file_entries(model_dir), tools=ctx.tools, parity=[fp32, tuned],
        golden=GoldenTest(messages=parity.GOLDEN_MESSAGES, expected_tokens=golden, computed_on=golden_on),
        built_at=now_iso(), build_seconds=round(time.monotonic() - t0, 1),
    )
    return ModelResult(manifest, _size(model_dir), time.monotonic() - t0)


def build_embeddings(ctx: BuildContext, m: ModelSpec, task_id) -> ModelResult:
    t0 = time.monotonic()
    prof = ctx.profile
    ctx.stage(task_id, f"{m.id}: fetching source")
    src = resolve_source(m.source, m.id, ctx.cache)
    if src.kind != "hf":
        raise ApplianceError(f"model {m.id}: embeddings need a Hugging Face folder source, got a {src.kind} file")
    ctx.stage(task_id, f"{m.id}: loading weights")
    work = ctx.work / m.id
    pooling, normalize = export_embeddings.read_pooling(src.path)
    ctx.stage(task_id, f"{m.id}: exporting to ONNX (dynamo)")
    exported, dims = export_embeddings.export_encoder(src.path, work / "export")
    ctx.stage(task_id, f"{m.id}: torch reference")
    texts = parity.EMBEDDING_TEXTS
    ref = parity.embeddings_reference(src.path, texts, pooling, normalize)
    cfg = EmbeddingsEngineConfig(filename="model.onnx", dimensions=dims, max_tokens=min(m.context_length, 512),
                                 max_batch=m.max_batch, pooling=pooling, normalize=normalize,
                                 threads=prof.tuning.threads)
    ctx.stage(task_id, f"{m.id}: parity of the fp32 export")
    th = prof.parity
    fp32 = _check(parity.embeddings_parity(OrtEmbedder(exported.parent, cfg, optimized=False), ref, texts,
                                           "export-fp32", "fp32", th.embeddings_min_cosine), m.id)
    ctx.stage(task_id, f"{m.id}: tuning for {prof.name} ({m.precision})")
    model_dir = ctx.staging / m.id
    model_dir.mkdir(parents=True)
    quant = tune.quantize_weights(exported, work / "quant" / "model.onnx", m.precision, prof, m.task)
    tune.optimize_graph(quant, model_dir / "model.onnx", prof)
    shutil.copy(src.path / "tokenizer.json", model_dir / "tokenizer.json")
    ctx.stage(task_id, f"{m.id}: parity of the tuned engine")
    embedder = OrtEmbedder(model_dir, cfg)
    min_cos = th.embeddings_int8_min_cosine if m.precision == "int8" else th.embeddings_min_cosine
    tuned = _check(parity.embeddings_parity(embedder, ref, texts, f"tuned-{m.precision}", m.precision, min_cos), m.id)
    golden_texts = texts[:2]
    golden_vecs, _ = embedder.embed(golden_texts)
    manifest = Manifest(
        model_id=m.id, task=m.task, precision=m.precision, sku=prof.name, backend=prof.backend,
        fingerprint=ctx.fingerprint, source=src.description, engine=cfg,
        files=file_entries(model_dir), tools=ctx.tools, parity=[fp32, tuned],
        golden=GoldenTest(input_texts=golden_texts, expected_embeddings=[[round(float(x), 7) for x in v] for v in golden_vecs]),
        built_at=now_iso(), build_seconds=round(time.monotonic() - t0, 1),
    )
    return ModelResult(manifest, _size(model_dir), time.monotonic() - t0)


def _check_all(figures: list[ParityFigures], model_id: str) -> list[ParityFigures]:
    for f in figures:
        if not f.passed:
            raise ParityError(f"model {model_id}: {f.stage} {f.component} parity out of bounds (max |diff| "
                              f"{f.max_abs_diff}, relative {f.max_rel_diff}, min cosine {f.min_cosine}; thresholds "
                              f"{f.thresholds}); the engine is not shipped")
    return figures


def build_image(ctx: BuildContext, m: ModelSpec, task_id) -> ModelResult:
    t0 = time.monotonic()
    prof = ctx.profile
    th = prof.parity
    ctx.stage(task_id, f"{m.id}: fetching source")
    src = resolve_source(m.source, m.id, ctx.cache)
    if src.kind != "diffusers":
        raise ApplianceError(f"model {m.id}: text-to-image needs a diffusers pipeline folder, got a {src.kind} source")
    ctx.stage(task_id, f"{m.id}: loading the diffusers pipeline")
    pipe = export_diffusion.load_pipeline(src.path)
    cfg = export_diffusion.engine_config(pipe, m, prof, seeded_noise_model=src.description["kind"] == "tiny-diffusers")
    work = ctx.work / m.id
    ctx.stage(task_id, f"{m.id}: exporting text encoder, UNet and VAE decoder to ONNX")
    exported = export_diffusion.export_components(pipe, cfg, work / "export")
    ctx.stage(task_id, f"{m.id}: parity of the fp32 export at {', '.join(cfg.sizes)}")
    fp32 = _check_all(diffusion_parity.component_parity(OrtDiffusion(exported, cfg, optimized=False), pipe, cfg,
                                                        "export-fp32", "fp32", max_rel=th.image_component_max_rel), m.id)
    ctx.stage(task_id, f"{m.id}: tuning for {prof.name} ({m.precision}, graph optimisation {prof.tuning.graph_optimization})")
    model_dir = ctx.staging / m.id
    model_dir.mkdir(parents=True)
    for part in (cfg.text_encoder, cfg.unet, cfg.vae_decoder):
        tune.optimize_graph(tune.quantize_weights(exported / part, work / "quant" / part, m.precision, prof, m.task),
                            model_dir / part, prof)
    shutil.copy(exported / "tokenizer.json", model_dir / "tokenizer.json")
    ctx.stage(task_id, f"{m.id}: parity of the tuned engines, and the numpy loop against diffusers")
    engine = OrtDiffusion(model_dir, cfg)
    tuned = diffusion_parity.component_parity(engine, pipe, cfg, f"tuned-{m.precision}", m.precision,
                                              max_rel=th.image_component_max_rel)
    tuned.append(diffusion_parity.pipeline_parity(engine, pipe, cfg, f"tuned-{m.precision}", m.precision,
                                                  th.image_max_abs_pixel))
    _check_all(tuned, m.id)
    steps = diffusion_parity.golden_steps(cfg)
    gw, gh = cfg.size_pixels(cfg.sizes[0])
    image = to_uint8(engine.generate(diffusion_parity.GOLDEN_PROMPT, gw, gh, 1, diffusion_parity.GOLDEN_SEED, steps))[0]
    manifest = Manifest(
        model_id=m.id, task=m.task, precision=m.precision, sku=prof.name, backend=prof.backend,
        fingerprint=ctx.fingerprint, source=src.description, engine=cfg,
        files=file_entries(model_dir), tools=ctx.tools, parity=[*fp32, *tuned],
        golden=GoldenTest(image_prompt=diffusion_parity.GOLDEN_PROMPT, image_size=cfg.sizes[0],
                          image_seed=diffusion_parity.GOLDEN_SEED, image_steps=steps,
                          expected_thumbnail=thumbnail(image)),
        built_at=now_iso(), build_seconds=round(time.monotonic() - t0, 1),
    )
    return ModelResult(manifest, _size(model_dir), time.monotonic() - t0)


BUILDERS = {"chat": (build_chat, 8), "embeddings": (build_embeddings, 7), "text-to-image": (build_image, 6)}


def summary_table(results: list[ModelResult], out: Path, total: float, dev_key: bool) -> Table:
    table = Table(title=f"Model store {out} ({total:.0f} s{', DEV-SIGNED' if dev_key else ''})")
    for col in ("model", "task", "precision", "engine size", "fp32 parity", "tuned parity", "time"):
        table.add_column(col)

    def fig(p: ParityFigures) -> str:
        if p.component == "pipeline":
            return f"pixels |d| {p.max_abs_diff:.2g}"
        if p.component is not None:
            return f"{p.component} rel {p.max_rel_diff:.2g}"
        if p.min_cosine is not None:
            return f"cos {p.min_cosine:.5f}"
        return f"agree {p.token_agreement:.3f}, prefix {p.greedy_prefix_agreement:.2f}, |dl| {p.max_abs_logit_diff:.3g}"

    for r in results:
        m = r.manifest
        first = max(m.parity, key=lambda p: p.max_rel_diff or 0) if m.task == "text-to-image" else m.parity[0]
        table.add_row(m.model_id, m.task, m.precision, f"{r.size_bytes / 2**20:.1f} MiB", fig(first),
                      fig(m.parity[-1]), f"{r.seconds:.0f} s")
    return table


def build_models(spec: ApplianceSpec, out: Path, signing_key: Path | None, cache: Path | None = None,
                 console: Console | None = None) -> list[ModelResult]:
    console = console or Console(stderr=True, width=max(120, Console(stderr=True).width))
    t0 = time.monotonic()
    profile = load_profile(spec.box.sku)
    if profile.backend != "cpu-ort":
        raise ApplianceError(f"SKU {profile.name} needs the {profile.backend} backend, which this factory "
                             "does not build yet; build on a cpu-ort SKU")
    key, dev = signing_key_for_build(signing_key)
    if dev:
        console.print(f"[bold yellow]WARNING: no --signing-key given; signing with the DEVELOPMENT key "
                      f"{dev_private_key_path()}. A box built for customers must be signed with the vendor key.[/]")
    _quiet_libraries()
    out = out.resolve()
    staging = staging_dir(out)
    cache = cache or default_cache_dir()
    work = staging.with_name(out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    results: list[ModelResult] = []
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            ctx = BuildContext(spec, profile, staging, work, cache, progress, detect().to_dict(), tool_versions())
            for m in spec.models:
                if m.task not in BUILDERS:
                    raise ApplianceError(f"model {m.id}: task {m.task!r} is not built by this factory yet")
                builder, stages = BUILDERS[m.task]
                task_id = progress.add_task(f"{m.id}: starting", total=stages)
                result = builder(ctx, m, task_id)
                progress.update(task_id, description=f"{m.id}: done", completed=stages)
                results.append(result)
        manifests = [(r.manifest, write_manifest(staging / r.manifest.model_id, r.manifest)) for r in results]
        write_index(staging, spec.box.name, profile.name, manifests, key)
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(summary_table(results, out, time.monotonic() - t0, dev))
    return results
