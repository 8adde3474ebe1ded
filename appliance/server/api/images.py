"""``POST /v1/images/generations``: text-to-image in OpenAI's shape, on the image queue, PNG as base64."""

from __future__ import annotations

import base64
import logging
import secrets
import time

from fastapi import APIRouter, Depends, Request, Response

from appliance.auth.keys import KeyRecord
from appliance.engine.diffusion.pipeline import to_uint8
from appliance.engine.diffusion.png import encode_png
from appliance.server.api.generation import require_ready
from appliance.server.auth import require_key_with_limits
from appliance.server.image_queue import ClientGone, ImageQueueFull, StepHook
from appliance.server.images_protocol import ImageData, ImageGenerationRequest, ImagePlan, ImagesResponse
from appliance.server.openai_errors import ApiError, error_responses
from appliance.server.runtime import ImageModel, Runtime

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")


def image_model(rt: Runtime, name: str | None) -> ImageModel:
    require_ready(rt)
    if name is None:
        if len(rt.images) == 1:
            return next(iter(rt.images.values()))
        raise ApiError(400, f"'model' is required; image models: {', '.join(rt.images) or 'none'}", "model",
                       "missing_required_parameter")
    m = rt.images.get(name)
    if m is None:
        raise ApiError(404, f"The model '{name}' does not exist or is not an image model (image models: "
                            f"{', '.join(rt.images) or 'none'})", "model", "model_not_found")
    return m


def _render(model: ImageModel, plan: ImagePlan, on_step: StepHook) -> list[str]:
    images = model.engine.generate(plan.prompt, plan.width, plan.height, plan.n, plan.seed, plan.steps,
                                   on_step=on_step)
    return [base64.b64encode(encode_png(p)).decode() for p in to_uint8(images)]


@router.post("/images/generations", response_model=ImagesResponse,
             responses=error_responses(400, 401, 404, 429, 503))
async def generate_images(req: ImageGenerationRequest, request: Request,
                          key: KeyRecord = Depends(require_key_with_limits)) -> Response:
    req.log_ignored("/v1/images/generations")
    rt: Runtime = request.app.state.runtime
    model = image_model(rt, req.model)
    cfg = model.manifest.engine
    plan = req.plan(model.id, cfg, secrets.randbelow(1 << 63) if req.seed is None else req.seed)
    tokens = model.engine.count_tokens(plan.prompt)
    if tokens > cfg.max_text_tokens:
        raise ApiError(400, f"the prompt is {tokens} tokens; this model's text encoder reads at most "
                            f"{cfg.max_text_tokens} (the rest would be dropped): shorten it", "prompt",
                       "context_length_exceeded")

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    start = time.perf_counter()
    try:
        encoded = await rt.image_queue.run(model.id, lambda on_step: _render(model, plan, on_step), disconnected)
    except ImageQueueFull as exc:
        raise ApiError(429, f"the box is busy ({exc}); retry shortly", code="queue_full",
                       headers={"Retry-After": "5"}) from None
    except ClientGone:
        log.info("image request for %s abandoned by its client", model.id)
        request.app.state.keys.record_usage(key.id, tokens, 0)
        return Response(status_code=499)
    rt.metrics.images_generated.labels(model.id).inc(plan.n)
    rt.metrics.image_seconds.labels(model.id).observe(time.perf_counter() - start)
    request.app.state.keys.record_usage(key.id, tokens, 0)
    body = ImagesResponse(size=plan.size, data=[ImageData(b64_json=b, seed=plan.seed) for b in encoded])
    return Response(body.model_dump_json(), media_type="application/json")
