"""The command line: WAV output, checkpoint info, and one-line errors on bad input."""
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from conftest import REPO, fixture_path

T2 = str(fixture_path("tacotron2_small_ngc.pt"))
WG = str(fixture_path("waveglow_small_ngc.pt"))


def run(*args, stdin=None, env_extra=None):
    env = {"PATH": "/usr/bin:/bin", "TACOGLOW_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TORCH_HOME": "/nonexistent-torch-home"}
    if "no voice" in (env_extra or {}).get("CASE", ""):
        env["TACOGLOW_VOICE_DIR"] = "/nonexistent-voice"
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "tacoglow", *args], capture_output=True, cwd=REPO,
                          input=stdin, env=env, timeout=300)


def test_synthesize_writes_pcm16_of_mel_length_times_hop(tmp_path):
    from tacoglow import Synthesizer

    out = tmp_path / "out.wav"
    text = "Hello world, how are you?"
    r = run("synthesize", text, "-o", str(out), "--tacotron2", T2, "--waveglow", WG, "--seed", "7", "--threads", "1")
    assert r.returncode == 0, r.stderr.decode()
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    synth = Synthesizer.from_checkpoints(T2, WG)
    speech = synth.synthesize(text, seed=7)
    assert len(speech.sentences) == 1
    assert info.frames == speech.sentences[0].mel_length * 256
    data, _ = sf.read(out, dtype="int16")
    expected = torch.from_numpy(data).float() / 32768
    # loud samples are clipped, never wrapped around
    reference = speech.audio.clamp(-1, 1)
    assert (expected - reference).abs().max() < 2 / 32768 + 1e-6


def test_stdout_and_stdin(tmp_path):
    r = run("synthesize", "-", "-o", "-", "--tacotron2", T2, "--vocoder", "griffin-lim", "--seed", "1",
            stdin=b"Testing standard input.")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout[:4] == b"RIFF" and r.stdout[8:12] == b"WAVE"


def test_lines_file_to_folder(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("First line.\n\nSecond line here.\n")
    r = run("synthesize", "-i", str(lines), "-o", str(tmp_path / "outdir"), "--tacotron2", T2,
            "--vocoder", "griffin-lim", "--quiet")
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "outdir").iterdir()) == ["0001.wav", "0002.wav"]


def test_info():
    r = run("info", T2)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "tacotron2" in out and "ngc" in out and "symbols_embedding_dim: 64" in out
    r = run("info", str(fixture_path("waveglow_small_legacy_nonzip.pt")))
    assert r.returncode == 0 and "waveglow-legacy" in r.stdout.decode()



def test_command_line_keeps_onednn_off_amx(monkeypatch, capsys, tmp_path):
    # The cap must come before torch's first oneDNN operation, so main sets it before anything else runs; only
    # for the verbs that synthesize (training keeps AMX for its bf16 convolutions).
    import os

    from tacoglow import quantized
    from tacoglow.cli import main

    monkeypatch.setattr(quantized, "cpu_has_amx", lambda: True)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.setenv(name, "x")  # recorded, so that what main sets is undone
        monkeypatch.delenv(name)
    assert main(["info", T2]) == 0 and "symbols_embedding_dim: 64" in capsys.readouterr().out
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ
    out = tmp_path / "hi.wav"
    assert main(["synthesize", "Hi.", "-o", str(out), "--tacotron2", T2, "--waveglow", WG, "--seed", "1"]) == 0
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_FP16" and sf.info(out).frames > 0
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the user's own cap stays
    assert main(["synthesize", "Hi.", "-o", str(out), "--tacotron2", T2, "--waveglow", WG, "--seed", "1"]) == 0
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"

def _bad(tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(fixture_path("tacotron2_small_ngc.pt").read_bytes()[:5000])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    ckpt = torch.load(T2)
    ckpt["state_dict"]["module.embedding.weight"] = torch.zeros(148, 3)
    shape = tmp_path / "shape.pt"
    torch.save(ckpt, shape)
    return {
        "missing": (["synthesize", "hi", "-o", str(tmp_path / "a.wav"), "--tacotron2", str(tmp_path / "missing.pt")],
                    "missing.pt"),
        "truncated": (["synthesize", "hi", "-o", str(tmp_path / "a.wav"), "--tacotron2", str(truncated)],
                      "truncated.pt"),
        "corrupt": (["synthesize", "hi", "-o", str(tmp_path / "a.wav"), "--tacotron2", str(corrupt)], "corrupt.pt"),
        "wrong type": (["synthesize", "hi", "-o", str(tmp_path / "a.wav"), "--tacotron2", WG], "not a Tacotron 2"),
        "shape": (["synthesize", "hi", "-o", str(tmp_path / "a.wav"), "--tacotron2", str(shape)], "embedding.weight"),
        "empty text": (["synthesize", "   ", "-o", str(tmp_path / "a.wav"), "--tacotron2", T2], "empty"),
        "unspeakable": (["synthesize", "\U0001F600\U0001F680", "-o", str(tmp_path / "a.wav"), "--tacotron2", T2],
                        "no characters"),
        "no voice": (["synthesize", "hi", "-o", str(tmp_path / "a.wav")], "nvidia_tacotron2pyt_fp16_20190427"),
    }


@pytest.mark.parametrize("case", ["missing", "truncated", "corrupt", "wrong type", "shape", "empty text",
                                  "unspeakable", "no voice"])
def test_bad_input_gives_one_line_error(tmp_path, case):
    args, needle = _bad(tmp_path)[case]
    r = run(*args, env_extra={"CASE": case})
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tacoglow: error:"), err
    assert needle in lines[0]


def test_prepare_missing_corpus_is_one_line_error(tmp_path):
    r = run("prepare", str(tmp_path / "no_corpus"), str(tmp_path / "out"))
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err
    assert err.strip().startswith("tacoglow: error:") and "no_corpus" in err and len(err.strip().splitlines()) == 1


def test_voice_options_override_the_voices_synthesis_settings():
    from tacoglow import SynthesisConfig
    from tacoglow.cli import build_parser, load_synthesizer

    args = build_parser().parse_args(["synthesize", "hi", "-o", "a.wav", "--tacotron2", T2, "--griffin-lim-power",
                                      "1.5", "--griffin-lim-inversion-iters", "0", "--no-normalize", "--denoise", "0"])
    synth = load_synthesizer(args)
    assert synth.synthesis == SynthesisConfig(griffin_lim_power=1.5, griffin_lim_inversion_iters=0, normalize=False,
                                              denoiser_strength=0.0)
    args = build_parser().parse_args(["synthesize", "hi", "-o", "a.wav", "--tacotron2", T2])
    assert load_synthesizer(args).synthesis == SynthesisConfig()  # no option given: the voice's own settings


def test_domain_error_is_one_line_and_verbose_adds_its_traceback(tmp_path, capsys):
    from tacoglow.cli import main

    missing = str(tmp_path / "missing.pt")
    assert main(["info", missing]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"tacoglow: error: {missing}: no such file; check the path"]
    assert main(["synthesize", "hi", "-o", str(tmp_path / "a.wav"), "--tacotron2", T2, "--griffin-lim-power", "9"]) == 1
    assert capsys.readouterr().err == "tacoglow: error: griffin_lim_power must be in (0, 4], got 9.0\n"
    assert main(["-v", "info", missing]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "CheckpointError" in err
    assert err.splitlines()[-1] == f"tacoglow: error: {missing}: no such file; check the path"


def test_unexpected_exception_keeps_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    from tacoglow import cli
    from tacoglow.cli import models

    def broken(args):
        return 1 / 0

    monkeypatch.setattr(models, "info", broken)
    assert cli.main(["info", T2]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "ZeroDivisionError: division by zero" in err
    assert err.splitlines()[-1].startswith("tacoglow: internal error:") and "please report it" in err.splitlines()[-1]


@pytest.mark.parametrize("name", ["hifigan_dle_v1small.pt", "hifigan_jik876_type1/g_00000700"],
                         ids=["ngc", "jik876"])
def test_synthesize_with_hifigan_writes_its_audio(name, tmp_path):
    from tacoglow import Synthesizer

    from helpers import rel_err, tacotron2_for_hifigan

    hifigan = fixture_path(name)
    t2 = tacotron2_for_hifigan(hifigan, tmp_path)
    out = tmp_path / "out.wav"
    text = "Hello world, how are you?"
    r = run("synthesize", text, "-o", str(out), "--tacotron2", str(t2), "--hifigan", str(hifigan), "--seed", "7",
            "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr.decode()
    speech = Synthesizer.from_checkpoints(t2, hifigan=hifigan).synthesize(text, seed=7)
    data, rate = sf.read(out, dtype="int16")
    assert rate == 22050 and len(data) == speech.audio.numel() > 0
    assert rel_err(torch.from_numpy(data).float() / 32768, speech.audio.clamp(-1, 32767 / 32768)) < 1e-3
    r = run("synthesize", text, "-o", str(out), "--tacotron2", str(t2), "--vocoder", "hifigan")
    assert r.returncode == 1 and "--hifigan FILE" in r.stderr.decode()


def test_a_voice_folder_with_hifigan_speaks_with_it_by_default(tmp_path, monkeypatch):
    import shutil

    from tacoglow.hub import choose_checkpoints

    voice = tmp_path / "voice"
    voice.mkdir()
    shutil.copy(T2, voice / "tacotron2.pt")
    shutil.copy(WG, voice / "waveglow.pt")
    monkeypatch.setenv("TACOGLOW_VOICE_DIR", str(voice))
    assert choose_checkpoints() == (voice / "tacotron2.pt", voice / "waveglow.pt", None)
    shutil.copy(fixture_path("hifigan_dle_v1small.pt"), voice / "hifigan.pt")
    assert choose_checkpoints() == (voice / "tacotron2.pt", None, voice / "hifigan.pt")
    assert choose_checkpoints(vocoder="waveglow") == (voice / "tacotron2.pt", voice / "waveglow.pt", None)
    assert choose_checkpoints(vocoder="griffin-lim") == (voice / "tacotron2.pt", None, None)
