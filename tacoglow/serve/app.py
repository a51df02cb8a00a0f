"""The FastAPI app: routes, the Host allow-list, API keys and request counters, the web page; and :func:`run`
under uvicorn."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Awaitable, Callable, Union

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
from .auth import check_exposure, is_loopback, key_matches, needs_key, unauthorized
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
    """Pure ASGI middleware (streams pass untouched): the Host allow-list, the API key and the request counters."""

    ENDPOINTS = ("/", "/health", "/voices", "/metrics", "/v1/audio/speech", "/v1/synthesize")

    def __init__(self, app, metrics: Callable[[], Metrics | None], allowed_hosts: set[str] | None,
                 api_key: str | None = None):
        self.app, self.metrics, self.allowed_hosts, self.api_key = app, metrics, allowed_hosts, api_key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def send_and_watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].strip("[]").lower()
        authorization = headers[b"authorization"].decode("latin-1") if b"authorization" in headers else None
        try:
            if self.allowed_hosts is not None and host not in self.allowed_hosts:
                message = f"Host {host!r} is not served here; use {sorted(self.allowed_hosts)[0]}"
                await error_response(400, message)(scope, receive, send_and_watch)
            elif (self.api_key is not None and needs_key(scope["path"])
                  and not key_matches(authorization, self.api_key)):
                message, challenge = unauthorized(authorization)
                await error_response(401, message, headers=challenge)(scope, receive, send_and_watch)
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
               events: EventLog | None = None, seed: int | None = None, api_key: str | None = None,
               health_fields: Callable[[], Awaitable[dict]] | None = None) -> FastAPI:
    """The FastAPI app. ``synthesizer``: one voice (named ``voice_name``) or a :class:`VoiceCatalog` (whose
    default voice OpenAI's voice names then also name), or a factory of either, called once at start-up.

    ``allowed_hosts``: Host header names served (``None``: any; :func:`run` sets the loopback
    names when bound to loopback). ``events``: an :class:`EventLog` to watch the schedulers and streams.
    ``seed``: of every request that names none (None: a fresh one each). ``api_key``: required as
    ``Authorization: Bearer KEY`` on every route but ``/health`` and the web page (``tacoglow.serve.auth``).
    ``health_fields``: more fields for ``/health`` (a cluster's replica count).
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
                       allowed_hosts=allowed_hosts, api_key=api_key)
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
        return {"status": "ok", "queue": waiting, "active": active, **(await health_fields() if health_fields else {})}

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


def served_hosts(host: str, api_key: str | None) -> set[str] | None:
    """The Host names a server bound to ``host`` answers: the loopback names when bound to loopback (no DNS
    rebinding), else any; logs a warning when others can use it without a key."""
    if is_loopback(host):
        return {"localhost", "127.0.0.1", "::1"}
    if api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can use it", host)
    return None


def catalog_of(synthesizer: VoiceSource | Callable[[], VoiceSource], voice_name: str = "default") -> VoiceCatalog:
    """The catalog a server speaks with (a single voice is a catalog of one), OpenAI's voice names naming its
    default voice."""
    voices = synthesizer if isinstance(synthesizer, (Synthesizer, VoiceCatalog)) else synthesizer()
    catalog = voices if isinstance(voices, VoiceCatalog) else VoiceCatalog(voices, default_name=voice_name)
    catalog.add_aliases(OPENAI_VOICES)
    return catalog


def run(synthesizer: Callable[[], VoiceSource], *, host: str = "127.0.0.1", port: int = 8000,
        limits: ServerLimits | None = None, voice_name: str = "default", seed: int | None = None,
        api_key: str | None = None, no_auth: bool = False) -> None:
    """Check ``limits`` and the key, load the voice or voices with ``synthesizer()``, then serve on ``host:port``
    until interrupted.

    Bound beyond loopback, the server needs ``api_key``, or ``no_auth=True`` to serve whoever can reach it
    (:func:`tacoglow.serve.auth.check_exposure`).
    """
    import uvicorn  # here, so that create_app also runs under another ASGI server

    limits = limits or ServerLimits()
    limits.check()
    check_exposure(host, api_key, no_auth)
    catalog = catalog_of(synthesizer, voice_name)  # a name clash is refused here, in one line
    app = create_app(catalog, limits=limits, allowed_hosts=served_hosts(host, api_key), seed=seed, api_key=api_key)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
