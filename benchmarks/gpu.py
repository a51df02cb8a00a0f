"""GPU benchmark: tacoglow against NVIDIA's reference on one CUDA device, both loaded the way users load them,
plus the tests marked ``cuda``.

    python benchmarks/gpu.py --device cuda --reference DLE/PyTorch/SpeechSynthesis/Tacotron2 --json gpu.json
    python benchmarks/gpu.py --device cpu --quick                      # small models, every row, in seconds

Models: NVIDIA's shapes (Tacotron 2, 28.2 M parameters; WaveGlow with 256 channels, as published; HiFi-GAN V1)
with random weights under fixed seeds. Tacotron 2's stop gate is silenced (its bias at -1e4) and its
``max_decoder_steps`` is ``--steps``, so every run decodes exactly that many steps. The weights are saved in
NVIDIA's checkpoint layout under NVIDIA's file names in a temporary ``$TORCH_HOME/checkpoints`` and loaded from
there by the torch.hub entrypoints of both implementations (tacoglow's ``hubconf.py``; the reference's
``tacotron2/entrypoints.py`` and ``waveglow/entrypoints.py``), once with ``model_math='fp32'`` and once with
``'fp16'``. The fp16 rows then run the models in half precision (``.half()``, as NVIDIA's inference script does
with ``--fp16``); the fp32 rows in IEEE fp32 (TF32 off), where tacoglow must match the reference (relative
error below 1e-4). Each implementation's model is alone on the device while it is measured.

Inputs: eight LJSpeech sentences (the first, 131 characters, at batch 1), padded and sorted by
``nvidia_tts_utils().prepare_input_sequence``. The vocoders get tacoglow's fp32 Tacotron 2 mels of the same batch.

Timing: one untimed warm-up run, then the median of ``--repeats`` runs, each after ``torch.manual_seed``, with the
device synchronised around each run. RTF = seconds / audio seconds (all items of the batch). Peak memory is
``torch.cuda.max_memory_allocated`` over the timed runs (the model included). Rows that would start after
``--budget`` seconds are reported as skipped. ``--json PATH`` is rewritten after every row, so a run stopped
from outside leaves what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from tacoglow.hifigan import HiFiGAN, HiFiGANConfig
from tacoglow.hub import OFFLINE_ENV, TTSUtils, nvidia_file_name
from tacoglow.tacotron2 import Tacotron2Config
from tacoglow.waveglow import WaveGlowConfig

from inference import SEED, SENTENCES, SIGMA, Reference, build_tacotron2, build_waveglow, rel_err

REPO = Path(__file__).resolve().parents[1]
MATHS = ("fp32", "fp16")
EXACT = 1e-4  # the largest relative error an fp32 row may show against the reference
HOP, RATE = 256, 22050
# Four more LJSpeech validation lines without digits, for batch 8 (prepare_input_sequence sorts them).
TEXTS = SENTENCES + [
    "Let me retrace my steps, and speak more in detail of the treatment of the condemned in those bloodthirsty "
    "and brutally indifferent days,",
    "He was soon afterwards arrested on suspicion, and a search of his lodgings brought to light several "
    "garments saturated with blood;",
    "On occasion the Secret Service has been permitted to have an agent riding in the passenger compartment "
    "with the President.",
    "The first physician to see the President at Parkland Hospital was Dr. Charles J. Carrico, a resident in "
    "general surgery.",
]
# NVIDIA's synthetic mel (inference_perf.py --synth-data), for vocoder rows without Tacotron 2 mels.
SYNTHETIC_MEL = (-5.62, 1.98)
# NVIDIA's HiFi-GAN entrypoint reads this file name from $TORCH_HOME/checkpoints (both maths).
HIFIGAN_FILE = "hifigan_gen_checkpoint_10000_ft.pt"


@dataclasses.dataclass
class Shapes:
    tacotron2: Tacotron2Config
    waveglow: WaveGlowConfig
    hifigan: dict[str, Any]  # HiFiGANConfig fields
    name: str


FULL = Shapes(Tacotron2Config(), WaveGlowConfig(n_channels=256), {}, "NVIDIA's")
QUICK = Shapes(  # the test fixtures' sizes: the same code paths, a thousand times less arithmetic
    Tacotron2Config(symbols_embedding_dim=64, encoder_embedding_dim=64, attention_rnn_dim=96, attention_dim=32,
                    attention_location_n_filters=8, decoder_rnn_dim=96, prenet_dim=32, postnet_embedding_dim=48),
    WaveGlowConfig(n_layers=2, n_channels=16), {"upsample_initial_channel": 32}, "small (--quick)")


@dataclasses.dataclass
class Row:
    model: str
    math: str
    batch: int
    variant: str = ""
    audio_seconds: float | None = None
    seconds: float | None = None
    reference_seconds: float | None = None
    error: float | None = None
    error_against: str = ""
    peak_mib: float | None = None
    reference_peak_mib: float | None = None
    status: str = ""  # "ok", "FAIL", "no reference", or why a number is missing

    @property
    def rtf(self) -> float | None:
        return self.seconds / self.audio_seconds if self.seconds and self.audio_seconds else None

    @property
    def ratio(self) -> float | None:
        return self.reference_seconds / self.seconds if self.seconds and self.reference_seconds else None


class Unavailable(Exception):
    """A row that cannot be measured in this build or setup; the message says why."""


@dataclasses.dataclass
class Measurement:
    seconds: float | None = None
    peak_mib: float | None = None
    output: torch.Tensor | None = None
    failure: str = ""


# ------------------------------------------------------------------------------------------------ setup

class Bench:
    """What every row needs: the device, the checkpoint folder, the reference, the clock and the results."""

    def __init__(self, args: argparse.Namespace, shapes: Shapes, home: Path):
        self.args, self.shapes, self.home = args, shapes, home
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.started = time.perf_counter()
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.tests: dict[str, Any] | None = None
        self.mels: dict[int, torch.Tensor] = {}  # batch -> tacoglow's fp32 Tacotron 2 mel (CPU)
        self.reference = _import_reference(args.reference) if args.reference else None
        self.hifigan_reference = None
        self.hifigan_reference_error = ""

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @staticmethod
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def over_budget(self) -> bool:
        return self.elapsed() > self.args.budget

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def measure(self, fn: Callable[[], torch.Tensor]) -> Measurement:
        """Median seconds of ``repeats`` runs after a warm-up, each after torch.manual_seed; peak device memory;
        the last output on the CPU. A failure is returned, not raised."""
        if self.over_budget():
            return Measurement(failure=f"skipped: over the {self.args.budget:.0f} s budget")

        def once() -> torch.Tensor:
            torch.manual_seed(SEED)  # the CPU generator and every CUDA device's
            return fn()
        try:
            with torch.no_grad():
                once()
                self.sync()
                if self.cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
                times = []
                for _ in range(self.args.repeats):
                    self.sync()
                    start = time.perf_counter()
                    output = once()
                    self.sync()
                    times.append(time.perf_counter() - start)
            peak = torch.cuda.max_memory_allocated(self.device) / 2 ** 20 if self.cuda else None
            return Measurement(statistics.median(times), peak, output.detach().float().cpu())
        except Exception as error:  # one broken row must not cost the others
            return Measurement(failure=f"error: {type(error).__name__}: {_one_line(error)}")

    def place(self, model: torch.nn.Module, math: str) -> torch.nn.Module:
        model = model.to(self.device).eval()
        return model.half() if math == "fp16" else model

    def release(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def hub(self, entrypoint: str, **kwargs: Any) -> Any:
        """tacoglow's torch.hub entrypoint, loaded from this repository as users load NVIDIA's."""
        return torch.hub.load(str(REPO), entrypoint, source="local", **kwargs)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:160] + ("..." if len(text) > 160 else "")


def _stub_missing_modules() -> list[str]:
    """The reference imports librosa at module level for its STFT and mel classes, which no row builds; where
    librosa is not installed a stand-in lets the models import (calling it raises)."""
    if importlib.util.find_spec("librosa") is not None:
        return []

    def missing(name: str) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so that `import librosa.util` finds its submodules here

        def attribute(attr: str) -> Callable[..., Any]:
            def unavailable(*args: Any, **kwargs: Any) -> Any:
                raise ImportError(f"{name}.{attr}: librosa is not installed")
            return unavailable
        module.__getattr__ = attribute
        return module
    for name in ("librosa", "librosa.filters", "librosa.util"):
        sys.modules[name] = missing(name)
    return ["librosa"]


def _import_reference(path: str) -> Reference:
    stubbed = _stub_missing_modules()
    reference = Reference(path)  # checks the folder and puts it first on sys.path
    reference.entrypoints = {name: importlib.import_module(f"{name}.entrypoints")
                             for name in ("tacotron2", "waveglow")}
    reference.stubbed = stubbed
    return reference


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """TF32 off for products and convolutions: fp32 rows are compared with the reference at 1e-4."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _save_both_maths(payload: dict[str, Any], names: list[Path]) -> None:
    """One file under each of NVIDIA's names (the fp32 and the AMP checkpoint hold the same weights here)."""
    torch.save(payload, names[0])
    for name in names[1:]:
        try:
            os.link(names[0], name)
        except OSError:
            shutil.copyfile(names[0], name)


def write_checkpoints(shapes: Shapes, steps: int, folder: Path) -> None:
    """Random NVIDIA-shaped Tacotron 2 and WaveGlow in NVIDIA's layout ({"state_dict", "config"}), seeded."""
    folder.mkdir(parents=True, exist_ok=True)
    tacotron2 = build_tacotron2(shapes.tacotron2, steps)  # seed 0; gate silenced; max_decoder_steps = steps
    _save_both_maths({"state_dict": tacotron2.state_dict(), "config": tacotron2.config.to_dict()},
                     [folder / nvidia_file_name("tacotron2", m) for m in MATHS])
    del tacotron2
    waveglow = build_waveglow(shapes.waveglow)  # seed 0; `end` layers non-zero
    _save_both_maths({"state_dict": waveglow.state_dict(), "config": waveglow.config.to_nvidia()},
                     [folder / nvidia_file_name("waveglow", m) for m in MATHS])


def text_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return TTSUtils.prepare_input_sequence(TEXTS[:batch], cpu_run=True)


def vocoder_mel(bench: Bench, batch: int, frames: int) -> tuple[torch.Tensor, str]:
    if batch in bench.mels:
        return bench.mels[batch], "Tacotron 2's"
    g = torch.Generator().manual_seed(SEED)
    return torch.randn(batch, 80, frames, generator=g) * SYNTHETIC_MEL[1] + SYNTHETIC_MEL[0], "synthetic"


# ------------------------------------------------------------------------------------------------ rows
# Each model's rows come from one function: both implementations are measured in turn (each alone on the
# device), then the rows are completed with the comparison.

def _complete(row: Row, ours: Measurement, theirs: Measurement | None, model_math: str) -> Row:
    row.seconds, row.peak_mib = ours.seconds, ours.peak_mib
    if ours.failure:
        row.status = ours.failure
        return row
    if theirs is None:
        row.status = "no reference"
        return row
    row.reference_seconds, row.reference_peak_mib = theirs.seconds, theirs.peak_mib
    if theirs.failure:
        row.status = f"reference {theirs.failure}"
        return row
    row.error, row.error_against = rel_err(ours.output, theirs.output), "reference"
    if model_math == "fp32":
        row.status = "ok" if row.error < EXACT else "FAIL"
    else:
        row.status = "reported"
    return row


def tacotron2_rows(bench: Bench) -> Iterator[Row]:
    steps = bench.args.steps
    for model_math in bench.args.maths:
        ours: dict[tuple[int, str], Measurement] = {}
        try:
            model = bench.place(bench.hub("nvidia_tacotron2", model_math=model_math), model_math)
        except Exception as error:
            model, load_failure = None, f"error: loading: {type(error).__name__}: {_one_line(error)}"
        for batch in bench.args.batch_sizes:
            text, lengths = text_batch(batch)
            text, lengths = text.to(bench.device), lengths.to(bench.device)
            variants: dict[str, Callable[[], torch.Tensor]] = {}
            if model is not None:
                variants[""] = lambda: model.infer(text, lengths)[0]
                if bench.cuda:
                    from tacoglow.decoding import CUDAGraphSteps

                    variants["CUDA graph"] = lambda: model.infer_detailed(
                        text, lengths, runtime=CUDAGraphSteps(model.decoder)).mel_postnet
                if batch > 1:  # the Synthesizer's mode: one CPU generator per item
                    variants["per-item generators"] = lambda: model.infer(
                        text, lengths, [torch.Generator().manual_seed(SEED + i) for i in range(batch)])[0]
            for variant, fn in variants.items():
                bench.say(f"  Tacotron 2 {model_math} batch {batch} {variant or 'tacoglow'} ...")
                ours[(batch, variant)] = bench.measure(fn)
            if model is None:
                ours[(batch, "")] = Measurement(failure=load_failure)
            if model_math == "fp32" and ours[(batch, "")].output is not None:
                bench.mels[batch] = ours[(batch, "")].output
        model = None  # frees it: the closures above hold the name, not the model
        bench.release()

        theirs: dict[int, Measurement] = {}
        if bench.reference is not None:
            try:
                reference = bench.place(bench.reference.entrypoints["tacotron2"].nvidia_tacotron2(
                    pretrained=True, model_math=model_math), model_math)
            except Exception as error:
                reference, load_failure = None, f"error: loading: {type(error).__name__}: {_one_line(error)}"
            for batch in bench.args.batch_sizes:
                if reference is None:
                    theirs[batch] = Measurement(failure=load_failure)
                    continue
                text, lengths = text_batch(batch)
                text, lengths = text.to(bench.device), lengths.to(bench.device)
                bench.say(f"  Tacotron 2 {model_math} batch {batch} reference ...")
                theirs[batch] = bench.measure(Reference.quiet(lambda: reference.infer(text, lengths)[0]))
            reference = None
            bench.release()

        for (batch, variant), measured in ours.items():
            row = Row("Tacotron 2", model_math, batch, variant, audio_seconds=batch * steps * HOP / RATE)
            against = None if variant == "per-item generators" else theirs.get(batch)
            row = _complete(row, measured, against, model_math)
            if variant == "per-item generators" and not measured.failure:
                row.status = "no reference equivalent"
            yield row


def _vocoder_measurements(bench: Bench, name: str, loaders: tuple[Callable[[Bench, str], Callable], ...],
                          model_math: str, mels: dict[int, tuple[torch.Tensor, str]]
                          ) -> tuple[dict[int, Measurement], dict[int, Measurement], str]:
    """One vocoder's timings on the same mels, tacoglow's side then the reference's, each model loaded alone:
    (ours, theirs, why the reference is absent)."""
    dtype = torch.float16 if model_math == "fp16" else torch.float32
    ours: dict[int, Measurement] = {}
    theirs: dict[int, Measurement] = {}
    no_reference = ""
    for side, load, results in zip(("tacoglow", "reference"), loaders, (ours, theirs)):
        try:
            run = load(bench, model_math)
        except Unavailable as why:  # only the reference can be missing here
            no_reference = str(why)
            continue
        except Exception as error:
            results.update({b: Measurement(failure=f"error: loading: {type(error).__name__}: {_one_line(error)}")
                            for b in mels})
            continue
        for batch, (mel, _) in mels.items():
            mel = mel.to(bench.device, dtype)
            bench.say(f"  {name} {model_math} batch {batch} {side} ...")
            results[batch] = bench.measure(lambda: run(mel))
        run = None  # frees the model: the closures above hold the name, not the model
        bench.release()
    return ours, theirs, no_reference


def _waveglow_ours(bench: Bench, model_math: str) -> Callable[[torch.Tensor], torch.Tensor]:
    model = bench.hub("nvidia_waveglow", model_math=model_math)
    model = bench.place(model.remove_weightnorm(model), model_math)  # NVIDIA's hub example
    return lambda mel: model.infer(mel, sigma=SIGMA)


def _waveglow_reference(bench: Bench, model_math: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if bench.reference is None:
        raise Unavailable("no reference")
    model = bench.reference.entrypoints["waveglow"].nvidia_waveglow(pretrained=True, model_math=model_math)
    model = bench.place(model.remove_weightnorm(model), model_math)
    return lambda mel: model.infer(mel, sigma=SIGMA)


def waveglow_rows(bench: Bench) -> Iterator[Row]:
    name = f"WaveGlow {bench.shapes.waveglow.n_channels}"
    for model_math in bench.args.maths:
        mels = {batch: vocoder_mel(bench, batch, bench.args.steps) for batch in bench.args.batch_sizes}
        ours, theirs, _ = _vocoder_measurements(bench, "WaveGlow", (_waveglow_ours, _waveglow_reference),
                                                model_math, mels)
        for batch, measured in ours.items():
            row = Row(name, model_math, batch, f"{mels[batch][1]} mels",
                      audio_seconds=batch * mels[batch][0].size(2) * HOP / RATE)
            yield _complete(row, measured, theirs.get(batch), model_math)


class HiFiGANAdapter:
    """The HiFi-GAN rows' one seam to the package: tacoglow's generator through its hub entrypoint
    (``nvidia_hifigan``) and NVIDIA's through its own, from one checkpoint in NVIDIA's layout."""

    def write_checkpoint(self, fields: dict[str, Any], folder: Path) -> str:
        """A random V1 generator (seeded) saved as NVIDIA's file; returns the config's name."""
        config = HiFiGANConfig(**fields)
        torch.manual_seed(0)
        model = HiFiGAN(config)
        torch.save({"generator": model.state_dict(), "config": config.to_reference(), "train_setup": {}},
                   folder / HIFIGAN_FILE)
        return "V1" if not fields else "V1-shaped, small"

    def ours(self, bench: Bench, model_math: str) -> Callable[[torch.Tensor], torch.Tensor]:
        model = bench.place(bench.hub("nvidia_hifigan", model_math=model_math)[0], model_math)
        return lambda mel: model(mel)

    def reference(self, bench: Bench, model_math: str) -> Callable[[torch.Tensor], torch.Tensor]:
        if bench.hifigan_reference is None:
            raise Unavailable(bench.hifigan_reference_error or "no reference HiFi-GAN")
        with contextlib.redirect_stdout(sys.stderr):  # it announces its weight-norm removal
            model = bench.hifigan_reference.nvidia_hifigan(pretrained=True, model_math=model_math)[0]
        model = bench.place(model, model_math)
        return lambda mel: model(mel)


def _import_hifigan_reference(bench: Bench) -> None:
    """NVIDIA's HiFi-GAN entrypoint from --hifigan-reference (default: HiFiGAN beside the Tacotron2 folder)."""
    path = bench.args.hifigan_reference
    if path is None and bench.args.reference:
        candidate = Path(bench.args.reference).resolve().parent / "HiFiGAN"
        path = str(candidate) if candidate.is_dir() else None
    if path is None:
        bench.hifigan_reference_error = "no reference HiFi-GAN folder (--hifigan-reference)"
        return
    root = Path(path).resolve()
    if not (root / "hifigan" / "models.py").is_file():
        bench.hifigan_reference_error = f"{root}: not DeepLearningExamples' PyTorch/SpeechSynthesis/HiFiGAN folder"
        return
    try:
        _stub_missing_modules()
        sys.path.insert(0, str(root))
        bench.hifigan_reference = importlib.import_module("hifigan.entrypoints")
    except Exception as error:
        bench.hifigan_reference_error = f"reference HiFi-GAN did not import: {type(error).__name__}: {_one_line(error)}"


def hifigan_rows(bench: Bench) -> Iterator[Row]:
    adapter = HiFiGANAdapter()
    config_name = adapter.write_checkpoint(bench.shapes.hifigan, bench.home / "checkpoints")
    _import_hifigan_reference(bench)
    for model_math in bench.args.maths:
        mels = {batch: vocoder_mel(bench, batch, bench.args.steps) for batch in bench.args.batch_sizes}
        ours, theirs, no_reference = _vocoder_measurements(bench, "HiFi-GAN", (adapter.ours, adapter.reference),
                                                           model_math, mels)
        for batch, measured in ours.items():
            row = Row(f"HiFi-GAN {config_name}", model_math, batch, f"{mels[batch][1]} mels",
                      audio_seconds=batch * mels[batch][0].size(2) * HOP / RATE)
            row = _complete(row, measured, theirs.get(batch), model_math)
            if no_reference and row.status == "no reference" and bench.args.reference:  # why HiFi-GAN's is absent
                row.status = f"no reference: {no_reference}"
            yield row


BENCHMARKS: dict[str, Callable[[Bench], Iterator[Row]]] = {
    "tacotron2": tacotron2_rows,
    "waveglow": waveglow_rows,
    "hifigan": hifigan_rows,
}


# ------------------------------------------------------------------------------------------------ tests

def cuda_test_files() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text(encoding="utf-8"))


def run_cuda_tests(timeout: float) -> dict[str, Any]:
    """The tests marked ``cuda``, in a child pytest (-rs: skip reasons in the summary)."""
    files = cuda_test_files()
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-rs", "-q", "-p", "no:cacheprovider", *files]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env[OFFLINE_ENV] = "1"
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = ((expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else expired.stdout or "")
        output, code = output + f"\n(stopped after {timeout:.0f} s)", None
    lines = [line for line in output.strip().splitlines() if line.strip()]
    summary = next((line.strip("= ") for line in reversed(lines) if " in " in line and
                    any(w in line for w in ("passed", "failed", "skipped", "error", "deselected"))), "no summary")
    return dict(command=" ".join(command[1:]), files=files, returncode=code, summary=summary,
                seconds=time.perf_counter() - started, output_tail="\n".join(lines[-40:]))


# ------------------------------------------------------------------------------------------------ output

def _fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec) + suffix


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def table(rows: list[Row]) -> str:
    header = ["model", "math", "batch", "variant", "tacoglow s", "RTF", "reference s", "reference / tacoglow",
              "rel. err (vs)", "peak MiB", "reference peak MiB", "check"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        err = f"{r.error:.1e} ({r.error_against})" if r.error is not None else "-"
        cells = [r.model, r.math, str(r.batch), r.variant or "-", _fmt(r.seconds, ".4f"), _fmt(r.rtf, ".4f"),
                 _fmt(r.reference_seconds, ".4f"), _fmt(r.ratio, ".2f", "x"), err, _fmt(r.peak_mib, ".0f"),
                 _fmt(r.reference_peak_mib, ".0f"), r.status.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine(bench: Bench) -> dict[str, Any]:
    facts: dict[str, Any] = dict(device=str(bench.device), torch=torch.__version__, python=platform.python_version(),
                                 platform=platform.platform(), cpus=os.cpu_count())
    if bench.cuda:
        props = torch.cuda.get_device_properties(bench.device)
        facts.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2 ** 30, cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version(), multiprocessors=props.multi_processor_count)
    return facts


def report(bench: Bench) -> str:
    args = bench.args
    where = machine(bench)
    device = f"{where.get('gpu', 'CPU')} ({where['device']})"
    lines = [f"## GPU benchmark: {device}, torch {torch.__version__}"
             + (f", CUDA {where['cuda']}" if bench.cuda else f", {_count(torch.get_num_threads(), 'CPU thread')}"), ""]
    lines.append(f"- Models: {bench.shapes.name} shapes, random weights (seed 0), loaded through the torch.hub "
                 "entrypoints from NVIDIA-layout files; fp16 = model_math='fp16' then .half(); fp32 with TF32 off.")
    lines.append(f"- Tacotron 2: {args.steps} decoder steps (gate silenced), batch sizes {args.batch_sizes}; vocoders "
                 f"on the same batches' mels ({args.steps} frames; WaveGlow sigma {SIGMA}). Median of "
                 f"{_count(args.repeats, 'run')} after 1 warm-up, device synchronised.")
    if bench.reference is not None:
        stub = f" (stand-in for {', '.join(bench.reference.stubbed)})" if bench.reference.stubbed else ""
        lines.append(f"- Reference: {bench.reference.path}{stub}; fp32 rows must be within {EXACT:g} of it.")
    else:
        lines.append("- Reference: absent (no --reference): rows show tacoglow alone, without comparison.")
    if bench.tests is not None:
        lines.append(f"- CUDA tests ({', '.join(bench.tests['files']) or 'none found'}): {bench.tests['summary']} "
                     f"(exit code {bench.tests['returncode']}).")
    lines.append(f"- Whole run: {bench.elapsed():.0f} s (budget {args.budget:.0f} s).")
    lines += ["", table(bench.rows)]
    for note in bench.notes:
        lines += ["", note]
    return "\n".join(lines)


def write_json(bench: Bench, path: str | None) -> None:
    if not path:
        return
    rows = [{**dataclasses.asdict(r), "rtf": r.rtf, "reference_over_tacoglow": r.ratio} for r in bench.rows]
    settings = {k: v for k, v in vars(bench.args).items() if k != "json"}
    data = dict(machine=machine(bench), settings=settings, shapes=bench.shapes.name, tests=bench.tests,
                reference=str(bench.reference.path) if bench.reference else None, rows=rows,
                elapsed_s=bench.elapsed(), notes=bench.notes)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, target)


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--reference", metavar="DIR", help="NVIDIA DLE PyTorch/SpeechSynthesis/Tacotron2 folder")
    parser.add_argument("--hifigan-reference", metavar="DIR",
                        help="NVIDIA DLE PyTorch/SpeechSynthesis/HiFiGAN folder (default: beside --reference)")
    parser.add_argument("--quick", action="store_true", help="small models and few steps (a CPU check)")
    parser.add_argument("--steps", type=int, help="decoder steps = vocoder frames (default 500, quick 24)")
    parser.add_argument("--repeats", type=int, help="timed runs per row after 1 warm-up (default 3, quick 1)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--maths", nargs="+", choices=MATHS, default=list(MATHS))
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--tests", action=argparse.BooleanOptionalAction, default=None,
                        help="run the tests marked cuda first (default: on a CUDA device)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds after which no further measurement starts (default 300)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; quick on a CPU: 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and machine facts as JSON")
    args = parser.parse_args(argv)
    if args.threads is None and args.quick and torch.device(args.device).type == "cpu":
        args.threads = 1  # the small models gain nothing from threads that other processes may stall
    args.steps = args.steps or (24 if args.quick else 500)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.tests is None:
        args.tests = torch.device(args.device).type == "cuda"
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch sees no CUDA device (use --device cpu --quick for a CPU check)")
    if any(b < 1 or b > len(TEXTS) for b in args.batch_sizes):
        parser.error(f"--batch-sizes: between 1 and {len(TEXTS)}")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    with contextlib.ExitStack() as restore:
        restore.callback(torch.set_num_threads, threads)
        return _run(args)


def _run(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="tacoglow_gpu_") as home, environment(TORCH_HOME=home,
                                                                                 **{OFFLINE_ENV: "1"}), ieee_fp32():
        bench = Bench(args, QUICK if args.quick else FULL, Path(home))
        bench.say(f"GPU benchmark on {args.device}, torch {torch.__version__}; reference "
                  f"{bench.reference.path if bench.reference else 'absent'}")
        if args.tests:
            bench.say(f"running the CUDA tests: {' '.join(cuda_test_files())} ...")
            bench.tests = run_cuda_tests(timeout=max(30.0, min(150.0, args.budget / 2)))
            bench.say(f"  {bench.tests['summary']}")
            if bench.tests["returncode"] not in (0, 5):
                bench.notes.append("CUDA tests, last lines:\n\n```\n" + bench.tests["output_tail"] + "\n```")
        bench.say(f"writing {bench.shapes.name} checkpoints ({bench.elapsed():.0f} s) ...")
        write_checkpoints(bench.shapes, args.steps, Path(home) / "checkpoints")
        for name in args.only:
            try:
                for row in BENCHMARKS[name](bench):
                    bench.rows.append(row)
                    err = f", rel. err {row.error:.1e}" if row.error is not None else ""
                    bench.say(f"  -> {row.model} {row.math} batch {row.batch} {row.variant}: "
                              f"{_fmt(row.seconds, '.4f')} s, reference {_fmt(row.reference_seconds, '.4f')} s{err} "
                              f"[{row.status}] ({bench.elapsed():.0f} s)")
                    write_json(bench, args.json)
            except Exception as error:  # a bug in one model's rows: report it, measure the others
                traceback.print_exc()
                bench.notes.append(f"The {name} rows stopped early: {type(error).__name__}: {_one_line(error)}")
        print(report(bench), flush=True)
        write_json(bench, args.json)
    return bench.rows


if __name__ == "__main__":
    main()
