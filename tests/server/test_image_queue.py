"""The image queue: at most `concurrency` images at once, a bounded wait, 429 past it, and a client that leaves
frees its worker at the next step (or never starts)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from appliance.server.image_queue import ClientGone, ImageQueue, ImageQueueFull
from appliance.server.metrics import Metrics
from wait import wait_until


class Work:
    """A fake image: reports steps until released, so the test decides when it ends."""

    def __init__(self, steps: int = 1000):
        self.started, self.release, self.steps_done = threading.Event(), threading.Event(), 0
        self.steps = steps

    def __call__(self, on_step) -> str:
        self.started.set()
        for i in range(self.steps):
            if self.release.wait(0.01):
                return "image"
            self.steps_done += 1
            on_step(i + 1, self.steps)
        return "image"


async def stays_connected() -> None:
    await asyncio.Event().wait()


def gauge(metrics: Metrics, name: str, model: str = "m") -> float:
    return metrics.registry.get_sample_value(name, {"model": model})


async def on_thread(event: threading.Event) -> bool:
    return await asyncio.to_thread(event.wait, 10)


def test_one_at_a_time_then_the_waiting_one_runs():
    async def body():
        metrics = Metrics()
        q = ImageQueue(metrics, concurrency=1, max_queue=4)
        first, second = Work(), Work()
        t1 = asyncio.ensure_future(q.run("m", first, stays_connected))
        assert await on_thread(first.started)
        t2 = asyncio.ensure_future(q.run("m", second, stays_connected))
        seen = first.steps_done
        await asyncio.to_thread(wait_until, lambda: first.steps_done > seen + 5, 10, "the first image to go on")
        assert not second.started.is_set()  # it had every chance to start, and waited
        assert gauge(metrics, "appliance_image_queue_depth") == 1
        assert gauge(metrics, "appliance_image_requests_running") == 1
        first.release.set()
        assert await t1 == "image"
        assert await on_thread(second.started)
        second.release.set()
        assert await t2 == "image"
        assert gauge(metrics, "appliance_image_queue_depth") == 0 and q.busy() == 0
        assert metrics.registry.get_sample_value("appliance_image_denoising_steps_total", {"model": "m"}) > 5
        q.shutdown()

    asyncio.run(body())


def test_past_the_queue_limit_requests_are_refused():
    async def body():
        q = ImageQueue(Metrics(), concurrency=1, max_queue=1)
        running, waiting = Work(), Work()
        t1 = asyncio.ensure_future(q.run("m", running, stays_connected))
        assert await on_thread(running.started)
        t2 = asyncio.ensure_future(q.run("m", waiting, stays_connected))
        await asyncio.to_thread(lambda: None)
        with pytest.raises(ImageQueueFull, match="1 image requests are already waiting"):
            await q.run("m", Work(), stays_connected)
        running.release.set()
        waiting.release.set()
        assert await t1 == await t2 == "image"
        q.shutdown()

    asyncio.run(body())


def test_a_client_that_leaves_stops_its_image_at_the_next_step_and_frees_the_worker():
    async def body():
        q = ImageQueue(Metrics(), concurrency=1, max_queue=4)
        leave = asyncio.Event()
        running, queued = Work(), Work()
        t1 = asyncio.ensure_future(q.run("m", running, leave.wait))
        assert await on_thread(running.started)
        t2 = asyncio.ensure_future(q.run("m", queued, leave.wait))
        await asyncio.to_thread(lambda: None)
        leave.set()
        with pytest.raises(ClientGone):
            await t1
        with pytest.raises(ClientGone):
            await t2
        after = Work(steps=3)
        assert await q.run("m", after, stays_connected) == "image"  # the worker is free again
        assert after.steps_done == 3 and not queued.started.is_set() and running.steps_done < 1000
        q.shutdown()

    asyncio.run(body())
