"""What the daemon serves: the verified store's models, loaded once, self-tested, then ready.

Loading runs beside the HTTP server, so /healthz answers at once and
/readyz says what it is waiting for (or why it failed).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


from appliance.engine.diffusion.pipeline import OrtDiffusion, to_uint8
from appliance.engine.diffusion.thumbnail import max_difference, thumbnail
from appliance.engine.embeddings import OrtEmbedder
from appliance.engine.grammar import Grammars
from appliance.engine.greedy import engine_greedy
from appliance.engine.tokenizer import ChatTokenizer
from appliance.errors import ApplianceError
from appliance.server.image_queue import ImageQueue
from appliance.server.metrics import Metrics
from appliance.server.scheduler import Scheduler
from appliance.settings import Settings
from appliance.sku.detect import detect, physical_cores
from appliance.engine.similarity import cosine_rows
from appliance.store.manifest import DiffusionEngineConfig, EmbeddingsEngineConfig, LlmEngineConfig, Manifest
from appliance.store.verify import VerifiedModel, verify_store

log = logging.getLogger(__name__)


@dataclass
class ChatModel:
    id: str
    manifest: Manifest
    engine: object
    tokenizer: ChatTokenizer
    scheduler: Scheduler
    grammars: Grammars

    @property
    def context_length(self) -> int:
        return self.engine.context_length


@dataclass
class EmbeddingModel:
    id: str
    manifest: Manifest
    embedder: OrtEmbedder


@dataclass
class ImageModel:
    id: str
    manifest: Manifest
    engine: OrtDiffusion


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    state: str = "loading"  # loading -> ready | failed
    reason: str = "verifying the model store"
    chat: dict[str, ChatModel] = field(default_factory=dict)
    embeddings: dict[str, EmbeddingModel] = field(default_factory=dict)
    images: dict[str, ImageModel] = field(default_factory=dict)
    image_queue: ImageQueue | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    started_at: float = field(default_factory=time.monotonic)
    ready_seconds: float | None = None
    store_info: dict = field(default_factory=dict)
    on_ready: list[Callable[[], None]] = field(default_factory=list)
    on_failed: list[Callable[[str], None]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def model_ids(self) -> list[str]:
        return [*self.chat, *self.embeddings, *self.images]

    def start_loading(self) -> threading.Thread:
        t = threading.Thread(target=self._load_guarded, name="runtime-load", daemon=True)
        t.start()
        return t

    def _load_guarded(self) -> None:
        try:
            self.load()
        except ApplianceError as exc:
            self._fail(str(exc))
        except Exception as exc:  # anything else is a bug, but the daemon must still say why it is not ready
            log.exception("loading the store failed")
            self._fail(f"loading failed: {type(exc).__name__}: {exc}")

    def _fail(self, reason: str) -> None:
        self.state, self.reason = "failed", reason
        log.error("not ready: %s", reason)
        for hook in self.on_failed:
            hook(reason)

    def load(self) -> None:
        s = self.settings
        store = verify_store(s.store, s.trusted_key, detect())
        self.store_info = {"box": store.index.box, "sku": store.index.sku, "signing_key_id": store.index.signing_key_id,
                           "development_key": store.dev_key}
        for mid, vm in store.models.items():
            self.reason = f"loading {mid}"
            if vm.manifest.backend != "cpu-ort":
                raise ApplianceError(f"model {mid}: backend {vm.manifest.backend} is not available on this box")
            if isinstance(vm.manifest.engine, LlmEngineConfig):
                self.chat[mid] = self._load_chat(mid, vm)
            elif isinstance(vm.manifest.engine, EmbeddingsEngineConfig):
                self.embeddings[mid] = EmbeddingModel(mid, vm.manifest,
                                                      OrtEmbedder(vm.path, vm.manifest.engine, threads=s.threads))
            elif isinstance(vm.manifest.engine, DiffusionEngineConfig):
                threads = s.image_threads or max(1, physical_cores() // 2)
                self.images[mid] = ImageModel(mid, vm.manifest, OrtDiffusion(vm.path, vm.manifest.engine,
                                                                             threads=threads))
        if self.images:
            self.image_queue = ImageQueue(self.metrics, s.image_concurrency, s.max_queue)
        for mid in self.model_ids():
            self.reason = f"self-test of {mid}"
            self.self_test(mid)
        for model in self.chat.values():
            model.scheduler.start()
        self.state, self.reason = "ready", "engines verified and self-tests passed"
        self.ready_seconds = time.monotonic() - self.started_at
        self.metrics.ready.set(1)
        log.info("ready in %.2f s: %s", self.ready_seconds, ", ".join(self.model_ids()))
        for hook in self.on_ready:
            hook()

    def _load_chat(self, mid: str, vm: VerifiedModel) -> ChatModel:
        from appliance.engine.cpu_ort import CpuOrtLlm

        cfg: LlmEngineConfig = vm.manifest.engine  # type: ignore[assignment]
        engine = CpuOrtLlm(vm.path, cfg, threads=self.settings.threads)
        tokenizer = ChatTokenizer(vm.path / vm.manifest.tokenizer, vm.manifest.chat_template)
        chunk = self.settings.prefill_chunk or cfg.prefill_chunk
        engine_threads = self.settings.threads or cfg.threads or physical_cores()
        scheduler = Scheduler(mid, engine, self.metrics, self.settings.max_queue, chunk,
                              masks_beside_step=engine_threads < physical_cores())
        self.metrics.kv_capacity.labels(mid).set(engine.max_batch * engine.context_length)
        grammars = Grammars(tokenizer.tok.to_str(), engine.vocab_size, engine.eos_token_ids)
        return ChatModel(mid, vm.manifest, engine, tokenizer, scheduler, grammars)

    def self_test(self, mid: str) -> None:
        """Re-run the manifest's golden test; the engine must give what it gave in the factory."""
        if mid in self.images:
            m = self.images[mid]
            g = m.manifest.golden
            w, h = m.engine.cfg.size_pixels(g.image_size)
            got = thumbnail(to_uint8(m.engine.generate(g.image_prompt, w, h, 1, g.image_seed, g.image_steps))[0])
            if (diff := max_difference(got, g.expected_thumbnail)) > g.max_thumbnail_diff:
                raise ApplianceError(f"model {mid}: golden self-test image differs from the factory's by {diff:.1f} "
                                     f"levels (> {g.max_thumbnail_diff}); the engine or this hardware misbehaves: "
                                     "reinstall the store")
            return
        if mid in self.chat:
            m = self.chat[mid]
            g = m.manifest.golden
            ids = m.tokenizer.encode(m.tokenizer.render_chat(g.messages)) if g.messages else m.tokenizer.encode(g.prompt)
            got = engine_greedy(m.engine, [ids], len(g.expected_tokens), m.manifest.engine.prefill_chunk,
                                base_id=-1)[0]
            if got != g.expected_tokens:
                raise ApplianceError(f"model {mid}: golden self-test gave tokens {got[:8]}..., the factory recorded "
                                     f"{g.expected_tokens[:8]}...; the engine or this hardware misbehaves: reinstall the store")
        else:
            m = self.embeddings[mid]
            g = m.manifest.golden
            got, _ = m.embedder.embed(g.input_texts)
            cos = cosine_rows(got, g.expected_embeddings)
            if float(cos.min()) < g.min_cosine:
                raise ApplianceError(f"model {mid}: golden self-test cosine {cos.min():.6f} is below "
                                     f"{g.min_cosine}; the engine or this hardware misbehaves: reinstall the store")

    def shutdown(self) -> None:
        if self.image_queue is not None:
            self.image_queue.shutdown()
        for model in self.chat.values():
            model.scheduler.stop()
