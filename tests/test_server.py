"""The HTTP server, started for real on a loopback port: every endpoint, streaming, batching, every error.

Ordering claims ("the first chunk arrived before the last sentence was synthesized", "a disconnect
stopped the work") are checked with the server's own events (:class:`tacoglow.serve.EventLog`), not
with wall-clock limits: a `Gate` hook holds the synthesis thread at a chosen event and records what
the client had seen by then.
"""
import argparse
import base64
import contextlib
import io
import json
import socket
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile
import torch
import uvicorn
from scipy.signal import resample_poly

from tacoglow import GriffinLimVocoder, Synthesizer
from tacoglow.audio import wav_bytes
from tacoglow.cli import add_serve_arguments
from tacoglow.serve import EventLog, ServerLimits, create_app

from conftest import fixture_path

TWO = "Hello there. How are you today?"
FOUR = "The first sentence is here. A second one follows. Then a third. And the last one."


def load_voice() -> Synthesizer:
    return Synthesizer.from_checkpoints(fixture_path("tacotron2_small_ngc.pt"), fixture_path("waveglow_small_ngc.pt"))


@contextlib.contextmanager
def running_server(app):
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


class Gate:
    """A hook that holds the synthesis thread at the first event matching ``when`` until ``release()``
    (at most 10 s), and records whether it was released in time."""

    def __init__(self, events: EventLog, when):
        self.events, self.when = events, when
        self.held, self.opened = threading.Event(), threading.Event()
        self.released_in_time: bool | None = None
        events.subscribe(self)

    def __call__(self, event: dict) -> None:
        if self.released_in_time is None and self.when(event):
            self.held.set()
            self.released_in_time = self.opened.wait(10)

    def release(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.release()
        self.events.unsubscribe(self)


def wait_for(events: EventLog, name: str, **match) -> dict:
    for _ in range(1000):
        found = events.find(name, **match)
        if found:
            return found[-1]
        time.sleep(0.01)
    raise AssertionError(f"no {name} event matching {match}; events: {events.find()[-10:]}")


def samples(wav: bytes) -> np.ndarray:
    return soundfile.read(io.BytesIO(wav), dtype="int16")[0]


def pcm16(audio) -> np.ndarray:
    return np.round(np.clip(np.asarray(audio), -1, 1) * 32767).astype(np.int16)


def same_audio(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to float rounding: a sentence decoded in a batch of other sizes may differ by 1 LSB."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max(initial=0)) <= 1


@pytest.fixture(scope="module")
def reference() -> Synthesizer:
    """A second copy of the voice for expected results, so tests never share the server's model."""
    return load_voice()


@pytest.fixture(scope="module")
def server():
    events = EventLog()
    limits = ServerLimits(max_input_chars=600, max_concurrent=24, max_queue=8, batch_wait=0.05)
    app = create_app(load_voice, limits=limits, allowed_hosts={"127.0.0.1", "localhost"}, events=events)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.events = events
        yield client


def post(client, path: str, body, **kwargs) -> httpx.Response:
    return client.post(path, json=body, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == status and error["message"]
    return error


# --------------------------------------------------------------------------------- endpoints
def test_health_voices_page_and_static_files(server):
    assert server.get("/health").json() == {"status": "ok", "queue": 0, "active": 0}
    info = server.get("/voices").json()
    (voice,) = info["voices"]
    assert voice["name"] == "default" and "alloy" in voice["aliases"] and "tts-1" in voice["models"]
    assert voice["sample_rate"] == 22050 and voice["vocoders"] == ["waveglow", "griffin-lim"]
    assert voice["tacotron2"]["n_mel_channels"] == 80 and voice["waveglow"] is not None
    assert voice["sigma"] == 0.9 and voice["denoiser_strength"] == 0.01
    assert voice["griffin_lim"] == {"power": 1.0, "inversion_iters": 100}
    assert info["limits"]["max_input_chars"] == 600 and "opus" in info["formats"]["openai"]
    page = server.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert server.get(f"/static/{name}").status_code == 200


def test_metrics_count_requests_errors_audio_and_latency(server):
    def value(text: str, line: str) -> float:
        found = [row for row in text.splitlines() if row.startswith(line + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    before = server.get("/metrics").text
    assert post(server, "/v1/synthesize", {"text": TWO, "seed": 1, "stream": False}).status_code == 200
    assert post(server, "/v1/synthesize", {"text": TWO, "bogus": 1}).status_code == 422
    response = server.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    ok = 'tacoglow_requests_total{endpoint="/v1/synthesize",code="200"}'
    bad = 'tacoglow_request_errors_total{endpoint="/v1/synthesize",code="422"}'
    assert value(after, ok) == value(before, ok) + 1 and value(after, bad) == value(before, bad) + 1
    assert value(after, "tacoglow_audio_seconds_total") > value(before, "tacoglow_audio_seconds_total")
    count = "tacoglow_request_duration_seconds_count"
    assert value(after, count) == value(before, count) + 1
    assert 'tacoglow_request_duration_seconds_bucket{le="+Inf"}' in after
    assert value(after, "tacoglow_queue_length") == 0 and "tacoglow_active_requests" in after
    assert value(after, "tacoglow_batches_total") >= 2 and value(after, "process_resident_memory_bytes") > 0


def test_openai_speech_in_every_format(server, reference):
    expected_rate = {"mp3": 22050, "opus": 24000, "flac": 22050, "wav": 22050}
    for fmt, media in [("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("flac", "audio/flac"), ("wav", "audio/wav")]:
        response = post(server, "/v1/audio/speech", {"model": "tts-1", "input": TWO, "voice": "alloy",
                                                      "response_format": fmt})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(media)
        audio, rate = soundfile.read(io.BytesIO(response.content), dtype="float32")
        alone = reference.synthesize(TWO, seed=int(response.headers["x-seed"]))
        assert rate == expected_rate[fmt]
        assert abs(len(audio) / rate - alone.duration) < 0.1, fmt
    # OpenAI's default is mp3.
    default = post(server, "/v1/audio/speech", {"model": "tts-1-hd", "input": TWO, "voice": "onyx"})
    assert default.status_code == 200 and default.headers["content-type"] == "audio/mpeg"


def test_openai_pcm_is_24khz_16bit_little_endian_mono(server, reference):
    response = post(server, "/v1/audio/speech", {"model": "tts-1", "input": TWO, "voice": "nova",
                                                  "response_format": "pcm"})
    assert response.status_code == 200 and response.headers["x-sample-rate"] == "24000"
    got = np.frombuffer(response.content, "<i2")
    alone = reference.synthesize(TWO, seed=int(response.headers["x-seed"]))
    pause = np.zeros(round(reference.synthesis.sentence_pause * 24000), np.int16)
    pieces = [pcm16(resample_poly(s.audio.numpy(), 160, 147)) for s in alone.sentences]
    expected = np.concatenate([pieces[0], pause, pieces[1]])
    assert same_audio(got, expected)


def test_streamed_wav_has_a_placeholder_length_that_readers_accept(server, reference):
    with server.stream("POST", "/v1/audio/speech", json={"model": "tts-1", "input": TWO, "voice": "echo",
                                                         "response_format": "wav"}) as response:
        assert response.headers.get("transfer-encoding") == "chunked" and "content-length" not in response.headers
        body = response.read()
    assert body[4:8] == b"\xff\xff\xff\xff" and body[40:44] == b"\xff\xff\xff\xff"
    alone = reference.synthesize(TWO, seed=int(response.headers["x-seed"]))
    assert same_audio(samples(body), pcm16(alone.audio))
    with wave.open(io.BytesIO(body)) as reader:
        assert reader.getframerate() == 22050 and reader.getsampwidth() == 2 and reader.getnchannels() == 1
        assert np.array_equal(np.frombuffer(reader.readframes(10**9), "<i2"), samples(body))


def test_openai_speed_changes_duration(server):
    def seconds(speed):
        r = post(server, "/v1/audio/speech", {"model": "tts-1", "input": "Hello.", "voice": "alloy",
                                               "response_format": "pcm", "speed": speed})
        assert r.status_code == 200, r.text
        return len(r.content) / 2 / 24000

    assert seconds(2.0) == pytest.approx(seconds(1.0) / 2, rel=0.05)


def test_native_endpoint_equals_the_library_and_takes_its_options(server, reference):
    whole = post(server, "/v1/synthesize", {"text": TWO, "seed": 7, "stream": False})
    assert whole.status_code == 200 and whole.headers["x-seed"] == "7"
    assert whole.headers["content-length"] == str(len(whole.content))
    expected = wav_bytes(reference.synthesize(TWO, seed=7).audio, 22050)
    assert whole.content[:44] == expected[:44] and same_audio(samples(whole.content), samples(expected))
    streamed = post(server, "/v1/synthesize", {"text": TWO, "seed": 7})
    assert np.array_equal(samples(streamed.content), samples(whole.content))

    def audio(**options):
        r = post(server, "/v1/synthesize", {"text": "Hello.", "seed": 3, "format": "pcm", **options})
        assert r.status_code == 200, r.text
        return r.content

    base = audio()
    assert audio() == base
    assert audio(seed=4) != base
    (job,) = reference.sentence_jobs("Hello.", 3)
    (decoded,) = reference.decode_jobs([job])
    griffin_lim = reference.vocode(decoded.mel, generator=job.generator(1), vocoder=GriffinLimVocoder(reference.audio))
    assert audio(vocoder="griffin-lim") == pcm16(griffin_lim).tobytes()
    assert audio(sigma=0.0) != base and audio(denoiser_strength=0.0) != base
    for fmt in ("flac", "mp3", "opus"):
        r = post(server, "/v1/synthesize", {"text": "Hello.", "seed": 3, "format": fmt})
        assert r.status_code == 200 and soundfile.read(io.BytesIO(r.content))[0].size > 0


def test_native_jsonl_carries_audio_and_alignment_per_sentence(server, reference):
    r = post(server, "/v1/synthesize", {"text": TWO, "seed": 5, "format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    alone = reference.synthesize(TWO, seed=5)
    assert [(row["index"], row["total"], row["text"]) for row in lines] == [
        (0, 2, "Hello there."), (1, 2, "How are you today?")]
    for line, sentence in zip(lines, alone.sentences):
        a = line["alignment"]
        assert (a["steps"], a["symbols"]) == tuple(sentence.alignment.shape)
        assert len(base64.b64decode(a["data"])) == a["steps"] * a["symbols"]
        assert line["stopped_by"] == sentence.stopped_by and line["sample_rate"] == 22050
    audio = np.concatenate([np.frombuffer(base64.b64decode(row["audio"]), "<i2") for row in lines])
    assert same_audio(audio, pcm16(alone.audio))
    # Each line's words count from the start of its own audio (the sentence, then its pause): placed one line
    # after another, they are the request's words.
    offset, joined = 0.0, []
    for row in lines:
        joined += [(w["text"], w["start"] + offset, w["end"] + offset) for w in row["words"]]
        offset += len(base64.b64decode(row["audio"])) / 2 / row["sample_rate"]
    assert [w[0] for w in joined] == [w.text for w in alone.words] == ["hello", "there", "how", "are", "you", "today"]
    assert np.allclose([t for w in joined for t in w[1:]], [t for w in alone.words for t in (w.start, w.end)],
                       atol=1e-3)


def test_jsonl_words_follow_the_speed(server, reference):
    def lines(speed):
        r = post(server, "/v1/synthesize", {"text": TWO, "seed": 5, "format": "jsonl", "speed": speed})
        return [json.loads(line) for line in r.text.splitlines()]

    # The untrained voice speaks the first sentence for 80 frames and stops the second at once (no audio, its
    # words all where it stands): a speed changes neither, and both keep their words. Each line's audio is its
    # sentence, then the pause after it (``pause`` samples), which speed leaves as it is.
    spoken = []
    for normal, fast in zip(lines(1.0), lines(2.0)):
        assert normal["pause"] == fast["pause"]
        seconds = [(len(base64.b64decode(row["audio"])) / 2 - row["pause"]) / 22050 for row in (normal, fast)]
        spoken.append(seconds[0])
        ratio = seconds[1] / seconds[0] if seconds[0] else 1.0
        assert ratio < 0.6 or not seconds[0]  # the mel was stretched to half its frames, give or take one
        times = [t for w in normal["words"] for t in (w["start"], w["end"])]
        assert np.allclose([t for w in fast["words"] for t in (w["start"], w["end"])],
                           [t * ratio for t in times], atol=1.5e-3)
        assert [w["text"] for w in fast["words"]] == [w["text"] for w in normal["words"]]
    assert spoken == [80 * 256 / 22050, 0.0]


# --------------------------------------------------------------------------------- streaming and batching
def test_first_chunk_arrives_before_the_last_sentence_is_synthesized(server):
    events = server.events
    received_first = threading.Event()
    # Hold the synthesis thread just before it decodes the last of the four sentences, until the client has
    # read the first chunk; if the server buffered the whole answer, the client would get nothing meanwhile.
    gate = Gate(events, lambda e: e["event"] == "batch" and any(i == 3 and n == 4 for _, i, n in e["items"]))
    try:
        with server.stream("POST", "/v1/synthesize", json={"text": FOUR, "seed": 1, "format": "pcm"}) as response:
            job = int(response.headers["x-request-id"])
            chunks = response.iter_raw()
            first = next(chunks)
            received_first.set()
            gate.release()
            rest = b"".join(chunks)
    finally:
        gate.close()
    assert first and gate.released_in_time is True
    order = [(e["event"], e.get("index")) for e in events.find(job=job)]
    assert order.index(("chunk", 0)) < order.index(("sentence", 3))
    whole = post(server, "/v1/synthesize", {"text": FOUR, "seed": 1, "format": "pcm", "stream": False})
    assert first + rest == whole.content


def test_twenty_concurrent_seeded_requests_each_equal_the_request_alone(server):
    texts = [f"Request number {i} is here." + (" It has a second sentence." if i % 3 == 0 else "") for i in range(20)]
    bodies = [{"text": t, "seed": 100 + i, "format": "pcm", "stream": False} for i, t in enumerate(texts)]
    start = threading.Barrier(20)

    def send(body):
        start.wait()
        return post(server, "/v1/synthesize", body)

    with ThreadPoolExecutor(20) as pool:
        together = list(pool.map(send, bodies))
    alone = [post(server, "/v1/synthesize", body) for body in bodies]
    for a, b in zip(together, alone):
        assert a.status_code == b.status_code == 200
        assert same_audio(np.frombuffer(a.content, "<i2"), np.frombuffer(b.content, "<i2"))
    jobs = {int(r.headers["x-request-id"]) for r in together}
    shared = [e for e in server.events.find("batch") if len({j for j, _, _ in e["items"]} & jobs) > 1]
    assert shared and max(len(e["items"]) for e in shared) >= 4, "concurrent requests were not batched"


# --------------------------------------------------------------------------------- errors and limits
def test_malformed_json_wrong_content_type_and_unknown_paths(server):
    for body in (b"{not json", b'{"text": "a"', b"\xff\xfe"):
        error_of(server.post("/v1/synthesize", content=body, headers={"content-type": "application/json"}), 400)
    assert "JSON object" in error_of(post(server, "/v1/audio/speech", ["input"]), 400)["message"]
    error_of(server.post("/v1/synthesize", content=b'{"text": "hi"}', headers={"content-type": "text/plain"}), 415)
    error_of(server.get("/v2/nothing"), 404)
    error_of(server.get("/v1/audio/speech"), 405)
    assert "Host" in error_of(server.get("/health", headers={"host": "attacker.example"}), 400)["message"]


@pytest.mark.parametrize("path, body, param", [
    ("/v1/audio/speech", {"input": "Hi.", "voice": "alloy"}, "model"),
    ("/v1/audio/speech", {"model": "whisper-1", "input": "Hi.", "voice": "alloy"}, "model"),
    ("/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "nobody"}, "voice"),
    ("/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "ogg"},
     "response_format"),
    ("/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "aac"},
     "response_format"),
    ("/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "alloy", "speed": 5}, "speed"),
    ("/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "alloy", "stream_format": "sse"}, "stream_format"),
    ("/v1/audio/speech", {"model": "tts-1", "input": "   ", "voice": "alloy"}, "input"),
    ("/v1/synthesize", {"text": 12}, "text"),
    ("/v1/synthesize", {"text": "Hi.", "sigmaa": 0.5}, "sigmaa"),
    ("/v1/synthesize", {"text": "Hi.", "seed": -1}, "seed"),
    ("/v1/synthesize", {"text": "Hi.", "sigma": "loud"}, "sigma"),
    ("/v1/synthesize", {"text": "Hi.", "denoiser_strength": 2}, "denoiser_strength"),
    ("/v1/synthesize", {"text": "Hi.", "vocoder": "hifigan"}, "vocoder"),
    ("/v1/synthesize", {"text": "Hi.", "format": "aiff"}, "format"),
    ("/v1/synthesize", {"text": "Hi.", "speed": 0}, "speed"),
])
def test_bad_fields_get_422_naming_the_field(server, path, body, param):
    assert error_of(post(server, path, body), 422)["param"] == param


def test_too_long_input_and_too_large_body_get_413(server):
    error = error_of(post(server, "/v1/audio/speech", {"model": "tts-1", "input": "a" * 601, "voice": "alloy"}), 413)
    assert "601" in error["message"] and "600" in error["message"]
    padded = b'{"text": "hi"' + b" " * (600 * 6 + 4096) + b"}"
    error_of(server.post("/v1/synthesize", content=padded, headers={"content-type": "application/json"}), 413)


def test_client_disconnect_cancels_its_work(server):
    events = server.events
    text = " ".join(f"This is sentence number {i}." for i in range(6))
    cancelled = threading.Event()
    events.subscribe(watch := lambda e: cancelled.set() if e["event"] == "cancelled" else None)
    # Hold the synthesis thread before the third sentence until the server has seen the disconnect.
    gate = Gate(events, lambda e: e["event"] == "batch" and any(i == 2 and n == 6 for _, i, n in e["items"]))
    threading.Thread(target=lambda: gate.held.wait(10) and cancelled.wait(10) and gate.release(), daemon=True).start()
    try:
        with httpx.Client(base_url=str(server.base_url), timeout=30) as client:
            with client.stream("POST", "/v1/synthesize", json={"text": text, "seed": 2, "format": "pcm"}) as r:
                job = int(r.headers["x-request-id"])
                next(r.iter_raw())
        # leaving both blocks closes the connection with most of the answer unread
        assert wait_for(events, "cancelled", job=job)["reason"] == "disconnect"
        assert post(server, "/v1/synthesize", {"text": "Hi.", "seed": 1}).status_code == 200  # the thread moved on
    finally:
        gate.close()
        events.unsubscribe(watch)
    synthesized = [e["index"] for e in events.find("sentence", job=job)]
    scheduled = [i for e in events.find("batch") for j, i, _ in e["items"] if j == job]
    assert max(scheduled) <= 2 and max(synthesized) <= 2 < 5
    assert not events.find("finished", job=job)


def test_disconnect_while_waiting_for_a_whole_file_cancels_it(server):
    events = server.events
    text = " ".join(f"Whole file sentence {i}." for i in range(5))
    cancelled = threading.Event()
    events.subscribe(watch := lambda e: cancelled.set() if e["event"] == "cancelled" else None)
    gate = Gate(events, lambda e: e["event"] == "batch" and any(i == 1 and n == 5 for _, i, n in e["items"]))
    threading.Thread(target=lambda: gate.held.wait(10) and cancelled.wait(10) and gate.release(), daemon=True).start()
    body = json.dumps({"text": text, "seed": 8, "format": "mp3"}).encode()
    try:
        with socket.create_connection((server.base_url.host, server.base_url.port)) as sock:
            sock.sendall(b"POST /v1/synthesize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            assert gate.held.wait(10)
        (queued,) = events.find("queued", sentences=5)
        assert wait_for(events, "cancelled", job=queued["job"])["reason"] == "disconnect"
        assert post(server, "/v1/synthesize", {"text": "Hi.", "seed": 1}).status_code == 200
    finally:
        gate.close()
        events.unsubscribe(watch)
    assert max(e["index"] for e in events.find("sentence", job=queued["job"])) == 0


@pytest.fixture(scope="module")
def tight():
    """A server with one slot, one queue place and a short time-out."""
    events = EventLog()
    app = create_app(load_voice(), limits=ServerLimits(max_concurrent=1, max_queue=1, request_timeout=3.0,
                                                       batch_wait=0), events=events)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.events = events
        yield client


def test_full_queue_gets_503_with_retry_after_and_the_admitted_finish(tight):
    events = tight.events
    gate = Gate(events, lambda e: e["event"] == "batch")
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(post, tight, "/v1/synthesize", {"text": "One.", "seed": 1})
            assert gate.held.wait(10)
            waiting = pool.submit(post, tight, "/v1/synthesize", {"text": "Two.", "seed": 2})
            for _ in range(1000):
                if len(events.find("queued")) >= 2:
                    break
                time.sleep(0.01)
            rejected = post(tight, "/v1/audio/speech", {"model": "tts-1", "input": "Three.", "voice": "alloy"})
            gate.release()
            assert running.result().status_code == 200 and waiting.result().status_code == 200
    finally:
        gate.close()
    error = error_of(rejected, 503)
    assert int(rejected.headers["retry-after"]) >= 1 and "busy" in error["message"]
    assert events.find("rejected")


def test_time_out_gives_504_or_cuts_the_stream_and_cancels_the_work(tight):
    events = tight.events
    timed_out = threading.Event()
    events.subscribe(watch := lambda e: timed_out.set() if e.get("reason") == "timeout" else None)
    # Hold synthesis until the server has given up on the request: its time-out, not ours, ends the wait.
    gate = Gate(events, lambda e: e["event"] == "batch" and any(i == 1 for _, i, _ in e["items"]))
    threading.Thread(target=lambda: gate.held.wait(20) and timed_out.wait(20) and gate.release(), daemon=True).start()
    try:
        with tight.stream("POST", "/v1/synthesize", json={"text": "One. Two. Three.", "seed": 3, "format": "pcm"}) as r:
            job = int(r.headers["x-request-id"])
            with pytest.raises(httpx.RemoteProtocolError):  # the stream is cut, not ended cleanly
                r.read()
        assert wait_for(events, "cancelled", job=job)["reason"] == "timeout"
        timed_out.clear()
        gate2 = Gate(events, lambda e: e["event"] == "batch")
        threading.Thread(target=lambda: gate2.held.wait(20) and timed_out.wait(20) and gate2.release(),
                         daemon=True).start()
        try:
            error = error_of(post(tight, "/v1/synthesize", {"text": "One. Two.", "seed": 3, "stream": False}), 504)
        finally:
            gate2.close()
        assert "3 s" in error["message"]
    finally:
        gate.close()
        events.unsubscribe(watch)
    assert not events.find("finished", job=job)


def test_a_synthesis_error_is_a_json_500_and_the_server_goes_on():
    voice = load_voice()
    with torch.no_grad():
        voice.tacotron2.decoder.gate_layer.linear_layer.bias.fill_(-1e4)  # decode until the cap
        voice.tacotron2.postnet.convolutions[-1][0].conv.bias.fill_(float("nan"))
    with running_server(create_app(voice)) as url, httpx.Client(base_url=url, timeout=30) as client:
        for body in ({"text": "Hello.", "stream": False}, {"text": "Hello. Again.", "format": "pcm"}):
            error = error_of(client.post("/v1/synthesize", json=body), 500)
            assert "NaN" in error["message"] and error["type"] == "server_error"
        assert client.get("/health").json() == {"status": "ok", "queue": 0, "active": 0}


def test_serve_binds_loopback_by_default():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.max_input_chars, args.timeout) == ("127.0.0.1", 8000, 4096, 60.0)


def test_hifigan_voice_is_the_default_vocoder_and_listed(tmp_path):
    from helpers import tacotron2_for_hifigan

    hifigan = fixture_path("hifigan_dle_v1small.pt")
    t2 = tacotron2_for_hifigan(hifigan, tmp_path)

    def load() -> Synthesizer:
        return Synthesizer.from_checkpoints(t2, hifigan=hifigan)

    alone = load().synthesize(TWO, seed=7).audio
    app = create_app(load, limits=ServerLimits(batch_wait=0.0), allowed_hosts={"127.0.0.1", "localhost"})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        (voice,) = client.get("/voices").json()["voices"]
        assert voice["vocoders"] == ["hifigan", "griffin-lim"] and voice["default_vocoder"] == "hifigan"
        assert voice["hifigan"]["config"]["upsample_rates"] == [4, 4]
        assert voice["hifigan"]["denoiser_strength"] == 0 and voice["waveglow"] is None
        for body in ({"text": TWO, "seed": 7, "vocoder": "hifigan"}, {"text": TWO, "seed": 7, "stream": False}):
            r = post(client, "/v1/synthesize", body)
            assert r.status_code == 200 and same_audio(samples(r.content), pcm16(alone))
        gl = post(client, "/v1/synthesize", {"text": TWO, "seed": 7, "vocoder": "griffin-lim", "stream": False})
        assert gl.status_code == 200 and not same_audio(samples(gl.content), pcm16(alone))
        assert error_of(post(client, "/v1/synthesize", {"text": TWO, "vocoder": "waveglow"}), 422)["param"] == "vocoder"
