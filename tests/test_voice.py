"""The voice that ships with the package speaks with no checkpoint named."""
import subprocess
import sys

import soundfile as sf
import torch

from tacoglow import Synthesizer
from tacoglow.checkpoint import inspect_checkpoint
from tacoglow.hub import BUNDLED_VOICE_DIR, choose_checkpoints, default_checkpoints

from conftest import REPO


def test_bundled_voice_is_small_self_describing_and_found_first(monkeypatch):
    monkeypatch.delenv("TACOGLOW_VOICE_DIR", raising=False)
    tacotron2, waveglow = default_checkpoints()
    assert tacotron2 == BUNDLED_VOICE_DIR / "tacotron2.pt"
    total = sum(p.stat().st_size for p in BUNDLED_VOICE_DIR.rglob("*") if p.is_file())
    assert total < 50 * 2**20  # the whole voice folder
    loaded = inspect_checkpoint(tacotron2)
    assert loaded.layout == "tacoglow" and loaded.kind == "tacotron2"
    assert loaded.text["cleaners"] == ["english_cleaners"] and loaded.text["frontend"] == "english_cleaners/1"
    assert (BUNDLED_VOICE_DIR / "README.md").is_file()
    # Its vocoder: a HiFi-GAN V1 generator (fine-tuned from jik876's UNIVERSAL_V1), stored in fp16.
    vocoder = inspect_checkpoint(BUNDLED_VOICE_DIR / "hifigan.pt")
    assert vocoder.kind == "hifigan" and vocoder.audio == loaded.audio
    assert vocoder.config["upsample_initial_channel"] == 512
    assert {v.dtype for v in vocoder.state_dict.values()} == {torch.float16}


def test_bundled_voice_uses_its_hifigan_unless_griffin_lim_is_asked_for(monkeypatch):
    monkeypatch.delenv("TACOGLOW_VOICE_DIR", raising=False)
    assert choose_checkpoints() == (BUNDLED_VOICE_DIR / "tacotron2.pt", None, BUNDLED_VOICE_DIR / "hifigan.pt")
    assert choose_checkpoints(vocoder="griffin-lim") == (BUNDLED_VOICE_DIR / "tacotron2.pt", None, None)


# Short everyday inputs: each must end by the model's stop token, not by running into the step cap (which
# would leave up to two seconds of babble after the word).
SHORT_INPUTS = ["Hi.", "Yes.", "No.", "OK.", "Thanks!", "42.", "Hello.", "Good morning.", "Thank you.", "Stop.",
                "Go ahead.", "Sure.", "Of course.", "Really?", "Why not?", "See you.", "Seven.", "Maybe.",
                "All right.", "Goodbye."]


def test_bundled_voice_stops_short_inputs_by_the_gate():
    tacotron2, _ = default_checkpoints()
    synth = Synthesizer.from_checkpoints(tacotron2)
    jobs = [job for seed, text in enumerate(SHORT_INPUTS) for job in synth.sentence_jobs(text, seed)]
    assert len(jobs) == len(SHORT_INPUTS)
    results = synth.decode_jobs(jobs)
    capped = [(r.text, r.mel_length) for r in results if r.stopped_by != "gate"]
    assert capped == []
    assert all(r.mel_length * 256 / 22050 < 1.5 for r in results), [(r.text, r.mel_length) for r in results]


def test_bundled_voice_says_hello_world():
    tacotron2, waveglow = default_checkpoints()
    synth = Synthesizer.from_checkpoints(tacotron2, waveglow)
    speech = synth.synthesize("Hello world.", seed=0)
    (sentence,) = speech.sentences
    assert speech.sample_rate == 22050
    assert speech.audio.numel() == sentence.mel_length * 256
    assert 0.4 < speech.duration < 3.0  # about a second of speech, not silence and not babble
    assert torch.isfinite(speech.audio).all() and speech.audio.abs().max() > 0.01


def test_main_command_writes_hello_wav(tmp_path):
    out = tmp_path / "hello.wav"
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "TACOGLOW_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "tacoglow", "synthesize", "Hello world", "-o", str(out)],
                       cwd=REPO, env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16") and info.frames > 0
