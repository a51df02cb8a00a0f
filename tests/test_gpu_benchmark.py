"""benchmarks/gpu.py in its CPU quick mode: every row is there, its numbers are finite, and the printed table and
the JSON say the same. With ``TACOGLOW_REFERENCE`` set to NVIDIA's DeepLearningExamples Tacotron2 folder the
reference is compared as well, and every fp32 row must match it."""
import importlib.util
import json
import math
import os
import sys

import pytest

from conftest import REPO

REFERENCE = os.environ.get("TACOGLOW_REFERENCE")  # DLE PyTorch/SpeechSynthesis/Tacotron2, when at hand


@pytest.fixture(scope="module")
def gpu_benchmark():
    sys.path.insert(0, str(REPO / "benchmarks"))  # gpu.py imports its neighbour inference.py
    try:
        spec = importlib.util.spec_from_file_location("gpu_benchmark", REPO / "benchmarks" / "gpu.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_benchmark", None)
        sys.path.remove(str(REPO / "benchmarks"))


def test_quick_mode_on_cpu_reports_every_row(gpu_benchmark, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--quick", "--json", str(out)] + (["--reference", REFERENCE] if REFERENCE else [])
    gpu_benchmark.main(argv)
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    rows = data["rows"]

    families = {"Tacotron 2": "Tacotron 2", "WaveGlow": "WaveGlow 16", "HiFi-GAN": "HiFi-GAN"}
    for family in families.values():
        for math_ in ("fp32", "fp16"):
            for batch in (1, 8):
                assert any(r["model"].startswith(family) and r["math"] == math_ and r["batch"] == batch
                           for r in rows), (family, math_, batch)
    assert any(r["variant"] == "per-item generators" for r in rows)

    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| model | math | batch |") and len(table) == 1 + len(rows)
    for row, line in zip(rows, table[1:]):
        assert line.startswith(f"| {row['model']} | {row['math']} | {row['batch']} |")
        assert line.rstrip(" |").endswith(row["status"].replace("|", "/"))

    for r in rows:
        assert not r["status"].startswith(("error", "skipped")), r
        for key in ("seconds", "audio_seconds", "rtf"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        if r["error"] is not None:
            assert math.isfinite(r["error"]), r
    if REFERENCE:
        compared = [r for r in rows if r["math"] == "fp32" and r["error_against"] == "reference"]
        assert len(compared) >= 4
        assert all(r["error"] < 1e-4 and r["status"] == "ok" for r in compared), compared
    else:
        assert "Reference: absent" in printed
        assert all(r["reference_seconds"] is None for r in rows)
        assert {r["status"] for r in rows if r["seconds"] is not None} <= {"no reference", "no reference equivalent"}
    assert data["machine"]["device"] == "cpu" and data["shapes"] == "small (--quick)"
