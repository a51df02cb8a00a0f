"""HiFi-GAN inference speed on CPU: tacoglow's generator against jik876/hifi-gan's on the same weights.

    python benchmarks/hifigan_speed.py --reference PATH/TO/hifi-gan [--configs v1 v3] [--batch 1 4]

Each preset gets random weights (torch.manual_seed), loaded into both generators, weight norm folded in both.
The runs are interleaved (the reference, then each tacoglow mode, again and again), so that a change in the
machine's load hits every row alike, and the median is reported. Without --reference only tacoglow's rows
are printed, their errors measured against tacoglow's fp32.

Prints a Markdown table: config, batch, mode, seconds per call, real-time factor (seconds per second of
audio), speed-up over the reference, and the relative error ||y - y_ref|| / ||y_ref|| of the audio. On a busy
machine, `--threads 1 --clock cpu` measures what an idle core would take.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import platform
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tacoglow.hifigan import HiFiGAN, HiFiGANConfig

SAMPLING_RATE = 22050


class _AttrDict(dict):
    """jik876's Generator reads its config as attributes."""

    def __getattr__(self, name):
        return self[name]


def reference_generator(path: Path) -> type:
    """jik876's models.Generator, imported from a checkout (matplotlib stubbed if absent: only its plotting
    helpers use it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        stub = types.ModuleType("matplotlib")
        stub.use = lambda *args, **kwargs: None
        stub.pylab = types.ModuleType("matplotlib.pylab")
        sys.modules.update({"matplotlib": stub, "matplotlib.pylab": stub.pylab})
    sys.path.insert(0, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
        from models import Generator
    return Generator


def native_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double(), ref.double()
    return ((ours - ref).norm() / ref.norm()).item()


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, help="a jik876/hifi-gan checkout (its models.py)")
    parser.add_argument("--configs", nargs="+", default=["v1", "v3"], choices=["v1", "v2", "v3"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1])
    parser.add_argument("--seconds", type=float, default=2.0, help="audio per utterance (default 2 s: 172 frames)")
    parser.add_argument("--modes", nargs="+", choices=["fp32", "bf16"],
                        help="tacoglow's precisions (default fp32, and bf16 where the CPU computes it natively)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row (after one warm-up)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: the process's CPU time, which other processes' load hardly changes (with "
                             "--threads 1, the time an idle core would take)")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    modes = args.modes or (["fp32", "bf16"] if native_bf16() else ["fp32"])
    torch.set_num_threads(args.threads)
    Generator = reference_generator(args.reference) if args.reference else None

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}, {args.threads} threads, "
          f"{args.clock} clock; "
          f"load average at start {load_average()}\n")
    print("| config | batch | mode | seconds | RTF | vs reference | rel. error |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        config = getattr(HiFiGANConfig, name)()
        torch.manual_seed(0)
        model = HiFiGAN(config).eval()
        reference = None
        if Generator is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference = Generator(_AttrDict(config.to_reference())).eval()
            reference.load_state_dict(model.state_dict())  # the same keys, weight norm included
            with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
                reference.remove_weight_norm()
        model.remove_weight_norm().requires_grad_(False)
        frames = round(args.seconds * SAMPLING_RATE / config.hop_length)
        duration = frames * config.hop_length / SAMPLING_RATE
        for batch in args.batch:
            mel = torch.randn(batch, config.n_mel_channels, frames)
            runs = {f"tacoglow {mode}": functools.partial(model.infer, mel, precision=mode) for mode in modes}
            if reference is not None:
                runs = {"reference": functools.partial(reference, mel), **runs}
            times: dict[str, list[float]] = {label: [] for label in runs}
            with torch.inference_mode():
                outputs = {label: run() for label, run in runs.items()}  # warm-up, and the outputs compared
                for _ in range(args.repeats):
                    for label, run in runs.items():
                        start = clock()
                        run()
                        times[label].append(clock() - start)
            baseline = outputs["reference" if reference is not None else "tacoglow fp32"]
            ref_time = statistics.median(times["reference"]) if reference is not None else None
            for label, values in times.items():
                seconds = statistics.median(values)
                ratio = f"{ref_time / seconds:.2f}x" if ref_time else "-"
                error = "-" if outputs[label] is baseline else f"{rel_err(outputs[label], baseline):.1e}"
                print(f"| {name.upper()} | {batch} | {label} | {seconds:.3f} | {seconds / (batch * duration):.3f} "
                      f"| {ratio} | {error} |", flush=True)
    print(f"\nRTF: seconds per second of audio ({duration:.2f} s per utterance); load average at the end "
          f"{load_average()}")


if __name__ == "__main__":
    main()
