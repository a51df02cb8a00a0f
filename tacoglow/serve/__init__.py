"""HTTP speech server: an OpenAI-compatible endpoint, a native one and a web page over one Synthesizer.

Endpoints (every error is JSON ``{"error": {"message", "type", "param", "code"}}``)::

    POST /v1/audio/speech   OpenAI's audio API: model, input, voice, response_format, speed
    POST /v1/synthesize     tacoglow's own: text, seed, sigma, denoiser_strength, vocoder, speed, format
    GET  /health  /voices  /metrics (Prometheus text)  /  (a page that plays the stream)

Requests are batched across clients by :class:`BatchScheduler` (``batching``, no HTTP); the rest
only translates HTTP to jobs and pieces of audio back to bytes. ``wav``, ``pcm`` and ``jsonl``
(native: one JSON line per sentence with its audio and alignment) are streamed sentence by
sentence; the other formats are encoded once the last sentence is ready.

Modules: ``api`` (limits, request bodies, JSON errors), ``encoding`` (audio bytes), ``metrics``,
``batching``, ``service`` (one request from text to response), ``app`` (routes, :func:`run`).
"""
from .api import ApiError, ServerLimits
from .app import create_app, run
from .batching import BatchScheduler, EventLog, Job, Piece, QueueFull, TimedOut

__all__ = ["ApiError", "BatchScheduler", "EventLog", "Job", "Piece", "QueueFull", "ServerLimits", "TimedOut",
           "create_app", "run"]
