"""Shared test helpers: the golden fixtures made by running NVIDIA's reference implementation."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TACOGLOW_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"

# Tests are small; one thread keeps them fast and stable on a 2-core machine.
torch.set_num_threads(1)


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        raise FileNotFoundError(
            f"golden fixture {path} is missing: set TACOGLOW_SHARED to the folder holding fixtures/")
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
