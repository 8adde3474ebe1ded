"""Prometheus metrics of the serving daemon (never any content: counts and timings only)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_MASK = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One registry per app, so several servers in one process (tests) stay apart."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("appliance_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("appliance_request_duration_seconds", "HTTP request latency", ["route"],
                                 buckets=_LATENCY, registry=r)
        self.ttft = Histogram("appliance_time_to_first_token_seconds", "arrival to first generated token",
                              ["model"], buckets=_LATENCY, registry=r)
        self.tokens_generated = Counter("appliance_generated_tokens", "tokens generated", ["model"], registry=r)
        self.prompt_tokens = Counter("appliance_prompt_tokens", "prompt tokens received", ["model"], registry=r)
        self.prefix_reused = Counter("appliance_prefix_cache_reused_tokens", "prompt tokens served from the KV cache",
                                     ["model"], registry=r)
        self.queue_depth = Gauge("appliance_queue_depth", "requests waiting for a slot", ["model"], registry=r)
        self.running = Gauge("appliance_running_sequences", "sequences in the running batch", ["model"],
                             registry=r)
        self.batch_size = Histogram("appliance_step_batch_size", "sequences per engine step", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.steps = Counter("appliance_engine_steps", "engine steps run", ["model"], registry=r)
        self.kv_used = Gauge("appliance_kv_cache_used_tokens", "KV cache tokens held by running sequences",
                             ["model"], registry=r)
        self.kv_capacity = Gauge("appliance_kv_cache_capacity_tokens", "KV cache size in tokens", ["model"],
                                 registry=r)
        self.heartbeat = Gauge("appliance_scheduler_heartbeat_age_seconds",
                               "seconds since the scheduler loop last made progress", ["model"], registry=r)
        self.mask_batch = Histogram("appliance_grammar_mask_seconds",
                                    "computing one step's grammar masks (beside the engine step)", ["model"],
                                    buckets=_MASK, registry=r)
        self.mask_wait = Histogram("appliance_grammar_mask_wait_seconds",
                                   "waiting for grammar masks after the engine step (the part on the critical path)",
                                   ["model"], buckets=_MASK, registry=r)
        self.embedded_inputs = Counter("appliance_embedding_inputs", "inputs embedded", ["model"], registry=r)
        self.images_generated = Counter("appliance_images_generated", "images generated", ["model"], registry=r)
        self.image_steps = Counter("appliance_image_denoising_steps", "denoising steps run (a batch of n images "
                                   "counts once per step)", ["model"], registry=r)
        self.image_seconds = Histogram("appliance_image_request_seconds", "image request, queue wait included",
                                       ["model"], buckets=_LATENCY, registry=r)
        self.image_queue_depth = Gauge("appliance_image_queue_depth", "image requests waiting for a worker",
                                       ["model"], registry=r)
        self.images_running = Gauge("appliance_image_requests_running", "image requests on a worker", ["model"],
                                    registry=r)
        self.ready = Gauge("appliance_ready", "1 when engines are verified and self-tests passed", registry=r)
