"""Shared test helpers: the golden fixtures made by running NVIDIA's reference implementation."""
from pathlib import Path

import pytest
import torch

from tacoglow.quantized import avoid_amx

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # see its README.md; make_fixtures.py there regenerates them
DATA = REPO / "data"  # LJSpeech transcripts; see its README.md

# Tests are small; one thread keeps them fast and stable on a 2-core machine.
torch.set_num_threads(1)
# As the command line does, before torch's first oneDNN operation: int8 convolutions are then available (and
# tested) on AMX CPUs too, off AMX.
avoid_amx()


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        raise FileNotFoundError(
            f"golden fixture {path} is missing: restore it from git, or regenerate it with "
            f"tests/fixtures/make_fixtures.py (see tests/fixtures/README.md)")
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
