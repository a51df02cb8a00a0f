"""What a client may send and what it gets back on error: the request bodies and JSON errors.

Every error is JSON ``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API answers.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# OpenAI's voice names; each maps to the loaded voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse")
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}


class StreamCut(Exception):
    """A stream that had started cannot finish; the connection is closed without the final chunk."""


def error_response(status: int, message: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else ("server_busy" if status == 503 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status, headers=headers)


class OpenAISpeechRequest(BaseModel):
    """OpenAI's ``/v1/audio/speech`` body; other fields are ignored, as OpenAI's clients may add some."""

    model_config = ConfigDict(extra="ignore")
    model: str
    input: str
    voice: str
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = None  # accepted; Tacotron 2 has no style prompt
    stream_format: Literal["audio"] = "audio"


class SynthesizeRequest(BaseModel):
    """tacoglow's own options; a misspelled field is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")
    text: str
    voice: str | None = None
    format: Literal["wav", "pcm", "flac", "mp3", "opus", "jsonl"] = "wav"
    stream: bool = True  # wav, pcm and jsonl only; the other formats are sent whole
    seed: int | None = Field(None, ge=0, lt=1 << 63)
    vocoder: Literal["hifigan", "waveglow", "griffin-lim"] | None = None
    sigma: float | None = Field(None, ge=0.0, le=2.0)
    denoiser_strength: float | None = Field(None, ge=0.0, le=1.0)
    speed: float = Field(1.0, ge=0.25, le=4.0)


async def parse_body(request: Request, model: type[BaseModel], max_bytes: int) -> Any:
    """The request's JSON body as ``model``: 415, 413, 400 or 422 (naming the field) when it is not one."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "send the body as JSON with 'Content-Type: application/json'")
    too_large = ApiError(413, f"the request body is larger than {max_bytes} bytes")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    except RecursionError:  # "[[[[..." thousands deep, within the size limit
        raise ApiError(400, "the body is not JSON that can be read: it nests too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(422, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
