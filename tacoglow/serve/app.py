"""The FastAPI app: routes, the Host allow-list and request counters, the web page; and :func:`run` under uvicorn."""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path
from typing import Callable, Union

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..catalog import VoiceCatalog
from ..synthesizer import Synthesizer
from .api import (
    OPENAI_MODELS,
    OPENAI_VOICES,
    ApiError,
    OpenAISpeechRequest,
    StreamCut,
    SynthesizeRequest,
    error_response,
    parse_body,
)
from .batching import EventLog
from .encoding import OPENAI_PCM_RATE, OPUS_RATE, STREAMED
from .limits import ServerLimits
from .metrics import Metrics
from .service import SpeechService

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# What a server speaks with: one voice, or a catalog of voices (tacoglow.catalog); or a factory of either.
VoiceSource = Union[Synthesizer, VoiceCatalog]


class _Edge:
    """Pure ASGI middleware (streams pass untouched): the Host allow-list and the request counters."""

    ENDPOINTS = ("/", "/health", "/voices", "/metrics", "/v1/audio/speech", "/v1/synthesize")

    def __init__(self, app, metrics: Callable[[], Metrics | None], allowed_hosts: set[str] | None):
        self.app, self.metrics, self.allowed_hosts = app, metrics, allowed_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def send_and_watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].strip("[]").lower()
        try:
            if self.allowed_hosts is not None and host not in self.allowed_hosts:
                message = f"Host {host!r} is not served here; use {sorted(self.allowed_hosts)[0]}"
                await error_response(400, message)(scope, receive, send_and_watch)
            else:
                await self.app(scope, receive, send_and_watch)
        except StreamCut as error:
            log.warning("stream cut: %s", error)
        finally:
            if (metrics := self.metrics()) is not None:
                path = scope["path"]
                endpoint = path if path in self.ENDPOINTS else "/static" if path.startswith("/static/") else "other"
                metrics.add("tacoglow_requests_total", f'endpoint="{endpoint}",code="{status}"')
                if status >= 400:
                    metrics.add("tacoglow_request_errors_total", f'endpoint="{endpoint}",code="{status}"')


def create_app(synthesizer: VoiceSource | Callable[[], VoiceSource], *, limits: ServerLimits | None = None,
               voice_name: str = "default", allowed_hosts: set[str] | None = None,
               events: EventLog | None = None, seed: int | None = None) -> FastAPI:
    """The FastAPI app. ``synthesizer``: one voice (named ``voice_name``) or a :class:`VoiceCatalog` (whose
    default voice OpenAI's voice names then also name), or a factory of either, called once at start-up.

    ``allowed_hosts``: Host header names served (``None``: any; :func:`run` sets the loopback
    names when bound to loopback). ``events``: an :class:`EventLog` to watch the schedulers and streams.
    ``seed``: of every request that names none (None: a fresh one each).
    """
    limits = limits or ServerLimits()
    events = events or EventLog()
    max_body = limits.max_input_chars * 6 + 4096  # room for JSON's \uXXXX escapes

    async def lifespan(app: FastAPI):
        app.state.service = service = SpeechService(catalog_of(synthesizer, voice_name), limits, events, seed)
        try:
            yield
        finally:
            service.voices.stop(ApiError(503, "the server is shutting down"))
            events.unsubscribe(service.metrics.on_event)

    app = FastAPI(title="tacoglow", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_Edge, metrics=lambda: getattr(getattr(app.state, "service", None), "metrics", None),
                       allowed_hosts=allowed_hosts)
    app.add_exception_handler(ApiError, lambda r, e: error_response(e.status, e.message, e.param, e.headers))
    app.add_exception_handler(StarletteHTTPException, lambda r, e: error_response(e.status_code, str(e.detail)))
    app.add_exception_handler(Exception, lambda r, e: error_response(500, "internal error; see the server log"))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.post("/v1/audio/speech")
    async def openai_speech(request: Request) -> Response:
        service: SpeechService = request.app.state.service
        body: OpenAISpeechRequest = await parse_body(request, OpenAISpeechRequest, max_body)
        if body.model not in (*OPENAI_MODELS, "tacoglow"):
            raise ApiError(422, f"unknown model {body.model!r}; use one of {', '.join(OPENAI_MODELS)}", "model")
        service.check_voice(body.voice)
        if body.response_format == "aac":
            raise ApiError(422, "response_format 'aac' is not available: no AAC encoder is installed; "
                                "use mp3, opus, flac, wav or pcm", "response_format")
        rate = {"pcm": OPENAI_PCM_RATE, "opus": OPUS_RATE}.get(body.response_format)  # None: the voice's own
        return await service.speak(request, body.input, voice=body.voice, param="input", fmt=body.response_format,
                                   stream=True, sample_rate=rate, speed=body.speed)

    @app.post("/v1/synthesize")
    async def synthesize(request: Request) -> Response:
        service: SpeechService = request.app.state.service
        body: SynthesizeRequest = await parse_body(request, SynthesizeRequest, max_body)
        service.check_voice(body.voice)
        options = {k: v for k, v in (("sigma", body.sigma), ("denoiser_strength", body.denoiser_strength))
                   if v is not None}
        rate = OPUS_RATE if body.format == "opus" else None
        return await service.speak(request, body.text, voice=body.voice, param="text", fmt=body.format,
                                   stream=body.stream, sample_rate=rate, seed=body.seed, vocoder=body.vocoder,
                                   options=options, speed=body.speed)

    @app.get("/health")
    async def health(request: Request) -> dict:
        waiting, active = request.app.state.service.voices.lengths()
        return {"status": "ok", "queue": waiting, "active": active}

    @app.get("/voices")
    async def voices(request: Request) -> dict:
        service: SpeechService = request.app.state.service
        voices = await run_in_threadpool(service.voices.describe)  # reads an unloaded voice's checkpoint once
        return {"voices": voices, "default_voice": service.voices.catalog.default_name,
                "max_loaded_voices": service.voices.catalog.max_loaded, "limits": dataclasses.asdict(service.limits),
                "formats": {"openai": ["mp3", "opus", "flac", "wav", "pcm"],
                            "native": ["wav", "pcm", "flac", "mp3", "opus", "jsonl"],
                            "streamed": list(STREAMED)}}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        service: SpeechService = request.app.state.service
        return Response(service.metrics.render(*service.voices.lengths()), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page() -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"})

    return app


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def catalog_of(synthesizer: VoiceSource | Callable[[], VoiceSource], voice_name: str = "default") -> VoiceCatalog:
    """The catalog a server speaks with (a single voice is a catalog of one), OpenAI's voice names naming its
    default voice."""
    voices = synthesizer if isinstance(synthesizer, (Synthesizer, VoiceCatalog)) else synthesizer()
    catalog = voices if isinstance(voices, VoiceCatalog) else VoiceCatalog(voices, default_name=voice_name)
    catalog.add_aliases(OPENAI_VOICES)
    return catalog


def run(synthesizer: Callable[[], VoiceSource], *, host: str = "127.0.0.1", port: int = 8000,
        limits: ServerLimits | None = None, voice_name: str = "default", seed: int | None = None) -> None:
    """Check ``limits``, load the voice or voices with ``synthesizer()``, then serve on ``host:port`` until
    interrupted.

    Bound to loopback, the server answers only the loopback Host names (no DNS rebinding); bound to
    any other address, it serves whoever can reach it.
    """
    import uvicorn  # here, so that create_app also runs under another ASGI server

    limits = limits or ServerLimits()
    limits.check()
    catalog = catalog_of(synthesizer, voice_name)  # a name clash is refused here, in one line
    allowed = {"localhost", "127.0.0.1", "::1"} if _is_loopback(host) else None
    if allowed is None:
        log.warning("serving on %s: anyone who can reach it can use it; put an authenticating proxy in front", host)
    app = create_app(catalog, limits=limits, allowed_hosts=allowed, seed=seed)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
