"""Image generation's own queue and concurrency limit, beside the chat schedulers.

An image holds a worker for seconds. It never waits in, or holds up, a chat
model's scheduler: at most ``image_concurrency`` images run at once (each
engine with fewer threads than the box has cores), up to ``max_queue`` more
wait per model, and the rest are refused with 429. A client that goes away
frees its worker at the next denoising step.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, TypeVar

from appliance.engine.diffusion.pipeline import Cancelled
from appliance.server.metrics import Metrics

T = TypeVar("T")
StepHook = Callable[[int, int], None]


class ImageQueueFull(Exception):
    pass


class ClientGone(Exception):
    pass


class ImageQueue:
    def __init__(self, metrics: Metrics, concurrency: int, max_queue: int):
        self.metrics, self.concurrency, self.max_queue = metrics, concurrency, max_queue
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="image")
        self.waiting: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, table: dict[str, int], model_id: str, delta: int) -> None:
        with self._lock:
            table[model_id] = table.get(model_id, 0) + delta
            waiting, running = self.waiting.get(model_id, 0), self.running.get(model_id, 0)
        self.metrics.image_queue_depth.labels(model_id).set(waiting)
        self.metrics.images_running.labels(model_id).set(running)

    def busy(self) -> int:
        with self._lock:
            return sum(self.running.values())

    async def run(self, model_id: str, work: Callable[[StepHook], T],
                  disconnected: Callable[[], Awaitable[None]]) -> T:
        """Run ``work(on_step)`` on an image worker; raise ClientGone if ``disconnected()`` returns first."""
        with self._lock:
            full = self.waiting.get(model_id, 0) >= self.max_queue and sum(self.running.values()) >= self.concurrency
        if full:
            raise ImageQueueFull(f"{self.max_queue} image requests are already waiting for {model_id}")
        gone = threading.Event()
        steps = self.metrics.image_steps.labels(model_id)

        def on_step(done: int, total: int) -> None:
            steps.inc()
            if gone.is_set():
                raise Cancelled()

        def job() -> T:
            self._count(self.waiting, model_id, -1)
            self._count(self.running, model_id, +1)
            try:
                if gone.is_set():
                    raise Cancelled()
                return work(on_step)
            finally:
                self._count(self.running, model_id, -1)

        self._count(self.waiting, model_id, +1)
        submitted = self.pool.submit(job)
        future = asyncio.wrap_future(submitted)
        watch = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({future, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not watch.done():
                watch.cancel()
        if not future.done():
            gone.set()
            if submitted.cancel():  # never started: it no longer counts as waiting
                self._count(self.waiting, model_id, -1)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # its Cancelled is expected
            raise ClientGone()
        return future.result()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
