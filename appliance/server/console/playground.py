"""The playground: chat streamed token by token, embeddings similarity, image generation.

Its requests run through the same routes and scheduler as the API, charged
to the box's internal console key, so they show up in usage like any client.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from appliance.auth.keys import CONSOLE_KEY_NAME, KeyRecord
from appliance.auth.sessions import Session
from appliance.engine.similarity import cosine_rows
from appliance.server.api.generation import require_ready
from appliance.server.api.images import generate_images
from appliance.server.api.openai import chat_completions
from appliance.server.console.access import check_post, render, require_admin
from appliance.server.openai_errors import ApiError
from appliance.server.images_protocol import ImageGenerationRequest, image_card_metadata
from appliance.server.protocol import ChatCompletionRequest, ChatMessage

router = APIRouter(prefix="/console", include_in_schema=False)


class PlaygroundChat(BaseModel):
    model: str
    system: str = Field("", max_length=20000)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1, le=4096)
    messages: list[ChatMessage] = Field(min_length=1)


class PlaygroundImage(BaseModel):
    model: str
    prompt: str = Field(min_length=1, max_length=4000)
    size: str | None = None
    seed: int | None = Field(None, ge=0)


class Similarity(BaseModel):
    model: str
    a: str = Field(min_length=1, max_length=20000)
    b: str = Field(min_length=1, max_length=20000)


def console_key(request: Request) -> KeyRecord:
    keys = request.app.state.keys
    record = next((k for k in keys.list() if k.name == CONSOLE_KEY_NAME and not k.revoked), None)
    if record is None:
        raise ApiError(503, "the console has no key to account its requests to; run `appliance firstboot`",
                       code="not_provisioned")
    return record


@router.get("/playground", response_class=HTMLResponse)
async def playground(request: Request, session: Session = Depends(require_admin)) -> Response:
    rt = request.app.state.runtime
    image_models = {mid: image_card_metadata(m.manifest.engine) for mid, m in rt.images.items()}
    return render(request, "playground.html", session, active="playground", chat_models=list(rt.chat),
                  embedding_models=list(rt.embeddings), image_models=image_models)


@router.post("/api/chat")
async def chat(body: PlaygroundChat, request: Request, session: Session = Depends(require_admin)) -> Response:
    check_post(request, session, request.headers.get("x-csrf-token"))
    messages = ([ChatMessage(role="system", content=body.system)] if body.system.strip() else []) + body.messages
    req = ChatCompletionRequest(model=body.model, messages=messages, temperature=body.temperature,
                                max_tokens=body.max_tokens, stream=True)
    return await chat_completions(req, request, console_key(request))


@router.post("/api/image")
async def image(body: PlaygroundImage, request: Request, session: Session = Depends(require_admin)) -> Response:
    check_post(request, session, request.headers.get("x-csrf-token"))
    req = ImageGenerationRequest(model=body.model, prompt=body.prompt, size=body.size, seed=body.seed,
                                 response_format="b64_json")
    return await generate_images(req, request, console_key(request))


@router.post("/api/similarity")
async def similarity(body: Similarity, request: Request, session: Session = Depends(require_admin)) -> Response:
    check_post(request, session, request.headers.get("x-csrf-token"))
    rt = request.app.state.runtime
    require_ready(rt)
    model = rt.embeddings.get(body.model)
    if model is None:
        raise ApiError(404, f"no embeddings model {body.model!r}; available: {', '.join(rt.embeddings)}", "model",
                       "model_not_found")
    vectors, used = await anyio.to_thread.run_sync(model.embedder.embed, [body.a, body.b])
    request.app.state.keys.record_usage(console_key(request).id, used, 0)
    cosine = float(cosine_rows(vectors[:1], vectors[1:])[0])
    return JSONResponse({"model": model.id, "cosine": round(cosine, 4), "tokens": used})
