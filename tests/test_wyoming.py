"""Home Assistant's Wyoming protocol, spoken to by the ``wyoming`` package's own client over loopback: describe,
synthesize (equal, sample for sample, to ``tacoglow synthesize``), the streaming events, and error events."""
import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import soundfile as sf
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeTextFormat,
    SynthesizeVoice,
)

from tacoglow.catalog import VoiceCatalog, VoiceOptions, find_voices
from tacoglow.config import ConfigError
from tacoglow.serve.wyoming import SAMPLES_PER_CHUNK, WyomingHandler, WyomingSpeaker, complete_sentences, wyoming_server

from conftest import REPO, fixture_path
from test_server import load_voice, pcm16
from test_voices import make_voice_dir

TEXT = "Hello there. See you soon."  # the small test voice speaks both sentences (some it stops at once)
T2, WG = str(fixture_path("tacotron2_small_ngc.pt")), str(fixture_path("waveglow_small_ngc.pt"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(speaker: WyomingSpeaker):
    """The Wyoming server in this event loop on a free loopback port; yields the port."""
    port = free_port()
    server = wyoming_server(f"tcp://127.0.0.1:{port}")
    await server.start(partial(WyomingHandler, speaker))
    try:
        yield port
    finally:
        await server.stop()


def client_of(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port, connect_timeout=10, read_timeout=120)


@contextlib.asynccontextmanager
async def connected(speaker: WyomingSpeaker):
    """The Wyoming server in this event loop on a free loopback port, and a client connected to it."""
    async with serving(speaker) as port, client_of(port) as client:
        yield client


async def answer(client, *events, until: str = "audio-stop") -> list:
    """Send ``events`` (Eventables, or raw events), then read the answer up to an ``until`` or ``error`` event."""
    for event in events:
        await client.write_event(event if isinstance(event, Event) else event.event())
    got = []
    while True:
        event = await client.read_event()
        assert event is not None, f"the server closed the connection after {[e.type for e in got]}"
        got.append(event)
        if event.type in (until, "error"):
            return got


def audio_of(events) -> np.ndarray:
    """The samples of one answer: audio-start, audio-chunks, audio-stop."""
    assert [e.type for e in events[:1] + events[-1:]] == ["audio-start", "audio-stop"], [e.type for e in events]
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    chunks = [AudioChunk.from_event(e) for e in events[1:-1]]
    assert chunks and all(c.type == "audio-chunk" for c in events[1:-1])
    assert all(0 < len(c.audio) <= 2 * SAMPLES_PER_CHUNK and c.rate == 22050 for c in chunks)
    return np.frombuffer(b"".join(c.audio for c in chunks), "<i2")


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> VoiceCatalog:
    return VoiceCatalog(load_voice(), find_voices(make_voice_dir(tmp_path_factory.mktemp("voices"))))


@pytest.fixture(scope="module")
def command_line_audio(tmp_path_factory) -> np.ndarray:
    """``tacoglow synthesize`` of TEXT with seed 3, as 16-bit samples."""
    out = tmp_path_factory.mktemp("cli") / "out.wav"
    r = subprocess.run([sys.executable, "-m", "tacoglow", "synthesize", TEXT, "-o", str(out), "--tacotron2", T2,
                        "--waveglow", WG, "--seed", "3", "--quiet"], cwd=REPO, capture_output=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "TACOGLOW_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr.decode()
    return sf.read(out, dtype="int16")[0]


def test_describe_and_synthesize_equal_the_command_line(voices, command_line_audio):
    async def talk():
        async with connected(WyomingSpeaker(voices, seed=3)) as client:
            info = Info.from_event((await answer(client, Describe(), until="info"))[-1])
            spoken = audio_of(await answer(client, Synthesize(text=TEXT)))
            quick = audio_of(await answer(client, Synthesize(text=TEXT, voice=SynthesizeVoice(name="quick"))))
        return info, spoken, quick

    info, spoken, quick = asyncio.run(talk())
    (program,) = info.tts
    assert program.name == "tacoglow" and program.installed and program.supports_synthesize_streaming
    assert [v.name for v in program.voices] == ["default", "bright", "quick"]
    assert all(v.languages == ["en_US"] and v.installed and v.attribution.name for v in program.voices)
    assert np.array_equal(spoken, command_line_audio)  # with the voice's pause between the two sentences
    # A HiFi-GAN voice streams in chunks vocoded apart: the same audio within float rounding, so at most one
    # step of 16-bit PCM off.
    expected = pcm16(VoiceOptions().load(voices.files("quick")).synthesize(TEXT, seed=3).audio)
    assert quick.shape == expected.shape and np.abs(quick.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(quick[:1000], spoken[:1000])


def test_streamed_text_is_spoken_as_its_sentences_complete(voices):
    reference = load_voice()
    chunks = ["Hello the", "re. See you", " soon."]

    async def talk():
        async with connected(WyomingSpeaker(voices, seed=3)) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="default")).event())
            for chunk in chunks[:2]:  # the first sentence is whole once "See" follows it
                await client.write_event(SynthesizeChunk(text=chunk).event())
            first = await answer(client)
            # The whole text again, for servers that cannot stream: not spoken twice.
            rest = await answer(client, SynthesizeChunk(text=chunks[2]), Synthesize(text="".join(chunks)),
                                SynthesizeStop(), until="synthesize-stopped")
        return first, rest

    first, rest = asyncio.run(talk())
    assert np.array_equal(audio_of(first), pcm16(reference.synthesize("Hello there.", seed=3).audio))
    assert [e.type for e in rest].count("audio-start") == 1 and rest[-1].type == "synthesize-stopped"
    assert np.array_equal(audio_of(rest[:-1]), pcm16(reference.synthesize("See you soon.", seed=3).audio))


def test_bad_requests_get_an_error_event_and_the_connection_goes_on(voices):
    async def talk():
        async with connected(WyomingSpeaker(voices, seed=3, max_input_chars=50)) as client:
            replies = [await answer(client, Synthesize(text=text, voice=SynthesizeVoice(name=voice)))
                       for text, voice in (("", "default"), ("   ", "quick"), ("Hi.", "nobody"), ("a " * 30, None),
                                           ("...", "default"))]
            replies.append(await answer(client, SynthesizeChunk(text="Hi. There.")))
            replies.append(await answer(client, SynthesizeStart(voice=SynthesizeVoice(name="nobody"))))
            info = await answer(client, Describe(), until="info")  # still connected
        return replies, info

    replies, info = asyncio.run(talk())
    errors = [Error.from_event(reply[-1]) for reply in replies]
    assert all(len(reply) == 1 for reply in replies), [[e.type for e in reply] for reply in replies]
    assert [e.code for e in errors] == ["bad-request", "bad-request", "unknown-voice", "bad-request", "bad-request",
                                        "bad-request", "unknown-voice"]
    assert "text is empty" in errors[0].text and "text is empty" in errors[1].text
    assert "'nobody'" in errors[2].text and "'default', 'bright', 'quick'" in errors[2].text
    assert "60 characters" in errors[3].text and "at most 50" in errors[3].text
    assert "synthesize-start" in errors[5].text and "'nobody'" in errors[6].text
    assert info[-1].type == "info"


def test_streamed_text_splits_after_whole_sentences_only():
    assert complete_sentences("Hello there. How") == ("Hello there. ", "How")
    assert complete_sentences("It costs 3.") == ("", "It costs 3.")  # "3." may become "3.5"
    assert complete_sentences('He said "stop!" Then') == ('He said "stop!" ', "Then")
    assert complete_sentences("One. Two? Three") == ("One. Two? ", "Three")
    assert complete_sentences("Hi. Ask Dr. ") == ("Hi. ", "Ask Dr. ")  # the front-end's rule: "Dr." ends none
    with pytest.raises(ConfigError, match="--wyoming http://x: .*tcp://127.0.0.1:10200"):
        wyoming_server("http://x")


def test_serve_wyoming_from_the_command_line(command_line_audio, tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tacoglow", "serve", "--wyoming", f"tcp://127.0.0.1:{port}",
                               "--tacotron2", T2, "--waveglow", WG, "--seed", "3",
                               "--voice-dir", str(make_voice_dir(tmp_path))], cwd=REPO,
                              env={"PATH": "/usr/bin:/bin", "TACOGLOW_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def talk():
        for _ in range(600):  # until it listens (loading the voice comes first)
            assert server.poll() is None, server.stderr.read().decode()
            try:
                async with AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=120) as client:
                    info = Info.from_event((await answer(client, Describe(), until="info"))[-1])
                    return info, audio_of(await answer(client, Synthesize(text=TEXT)))
            except OSError:
                await asyncio.sleep(0.1)
        raise AssertionError("the Wyoming server did not start listening")

    try:
        info, audio = asyncio.run(talk())
        assert [v.name for v in info.tts[0].voices] == ["default", "bright", "quick"]
        assert np.array_equal(audio, command_line_audio)
    finally:
        server.terminate()
        server.wait(30)
    bad = subprocess.run([sys.executable, "-m", "tacoglow", "serve", "--wyoming", "udp://x", "--tacotron2", T2],
                         cwd=REPO, capture_output=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert bad.returncode == 1 and bad.stderr.decode().startswith("tacoglow: error: --wyoming udp://x: ")


def test_events_not_shaped_as_the_protocol_says_are_bad_requests(voices):
    events = [Event("synthesize", {}), Event("synthesize", {"text": 5}), Event("synthesize", {"text": None}),
              Event("synthesize", {"text": "Hi.", "voice": "quick"}),
              Event("synthesize", {"text": "Hi.", "voice": {"name": ["quick"]}}),
              Event("synthesize-start", {"voice": ["default"]})]

    async def talk():
        async with connected(WyomingSpeaker(voices, seed=3)) as client:
            replies = [await answer(client, event) for event in events]
            await client.write_event(SynthesizeStart().event())
            replies.append(await answer(client, Event("synthesize-chunk", {"txt": "Hi."})))
            replies.append(await answer(client, Describe(), until="info"))  # still connected
        return replies

    replies = asyncio.run(talk())
    assert all(len(reply) == 1 for reply in replies), [[e.type for e in reply] for reply in replies]
    errors = [Error.from_event(reply[0]) for reply in replies[:-1]]
    assert [e.code for e in errors] == ["bad-request"] * 7 and replies[-1][0].type == "info"
    assert errors[0].text == """a synthesize event's data must be {"text": "...", "voice": {"name": "..."}}, got {}"""
    assert errors[3].text.endswith('got {"text": "Hi.", "voice": "quick"}')
    assert errors[5].text == ("""a synthesize-start event's data must be {"voice": {"name": "..."}}, """
                              """got {"voice": ["default"]}""")
    assert errors[6].text == """a synthesize-chunk event's data must be {"text": "..."}, got {"txt": "Hi."}"""


def test_streamed_ssml_is_spoken_whole_at_the_stop(voices):
    reference = load_voice()
    document = '<speak>Hello there. <break time="300ms"/> See you soon.</speak>'
    chunks = ['<speak>Hello there. <break time="30', '0ms"/> See you', " soon.</speak>"]

    async def talk():
        async with connected(WyomingSpeaker(voices, seed=3, max_input_chars=len(document))) as client:
            await client.write_event(SynthesizeStart().event())
            for chunk in chunks:
                await client.write_event(SynthesizeChunk(text=chunk).event())
            spoken = await answer(client, Synthesize(text=document), SynthesizeStop(), until="synthesize-stopped")
            # Longer than the server takes: refused once, the rest of the stream dropped, the stop answered.
            await client.write_event(SynthesizeStart(text_format=SynthesizeTextFormat.SSML).event())
            refused = await answer(client, SynthesizeChunk(text="<speak>" + "a " * len(document)))
            dropped = await answer(client, SynthesizeChunk(text="b</speak>"), SynthesizeStop(),
                                   until="synthesize-stopped")
        return spoken, refused, dropped

    spoken, refused, dropped = asyncio.run(talk())
    assert [e.type for e in spoken].count("audio-start") == 1 and spoken[-1].type == "synthesize-stopped"
    expected = reference.synthesize_ssml(document, seed=3)
    assert np.array_equal(audio_of(spoken[:-1]), pcm16(expected.audio))
    assert expected.starts[1] - expected.sentences[0].audio.numel() == round(0.3 * 22050)
    assert [e.type for e in refused] == ["error"] and [e.type for e in dropped] == ["synthesize-stopped"]
    assert Error.from_event(refused[0]).text.startswith(f"the streamed SSML document has over {len(document)} ")


def test_a_client_that_leaves_mid_stream_does_not_stop_the_server(voices):
    text = " ".join(f"Sentence number {n}." for n in range(1, 9))

    async def talk():
        async with serving(WyomingSpeaker(voices, seed=3)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b'{"type": "synthesize", "data": {"text": "' + text.encode() + b'"}}\n')
            await writer.drain()
            first = await asyncio.wait_for(reader.readline(), 120)  # audio-start: the first sentence is ready
            writer.transport.abort()  # gone, with the other sentences still to come
            async with client_of(port) as client:
                again = await answer(client, Synthesize(text=TEXT))
        return first, again

    first, again = asyncio.run(talk())
    assert b'"type": "audio-start"' in first
    assert np.array_equal(audio_of(again), pcm16(load_voice().synthesize(TEXT, seed=3).audio))
    assert voices.in_use("default") == 0


def test_a_stream_whose_rest_is_refused_still_ends_with_synthesize_stopped(voices):
    async def talk():
        async with connected(WyomingSpeaker(voices, seed=3)) as client:
            await client.write_event(SynthesizeStart().event())
            refused = await answer(client, SynthesizeChunk(text="<speak>Hi <break time='soon'/>"), SynthesizeStop(),
                                   until="synthesize-stopped")
            stopped = await asyncio.wait_for(client.read_event(), 60)
            info = await answer(client, Describe(), until="info")
        return refused, stopped, info

    refused, stopped, info = asyncio.run(talk())
    assert [e.type for e in refused] == ["error"] and Error.from_event(refused[0]).code == "bad-request"
    assert Error.from_event(refused[0]).text.startswith("malformed SSML: ")
    assert stopped.type == "synthesize-stopped" and info[-1].type == "info"


def test_a_line_that_is_json_but_no_event_closes_that_connection_only(voices, caplog):
    async def talk():
        async with serving(WyomingSpeaker(voices, seed=3)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"[1, 2]\n")
            await writer.drain()
            closed = await asyncio.wait_for(reader.read(), 60)  # b"": the server closed it
            writer.close()
            async with client_of(port) as client:
                info = await answer(client, Describe(), until="info")
        return closed, info

    with caplog.at_level(logging.WARNING, logger="tacoglow.serve.wyoming"):
        closed, info = asyncio.run(talk())
    assert closed == b"" and info[-1].type == "info"
    assert [r.getMessage() for r in caplog.records if r.name == "tacoglow.serve.wyoming"] == [
        "closed a Wyoming connection that sent something that is no event ('list' object has no attribute 'get')"]
