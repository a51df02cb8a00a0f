"""`recipes/slt/build_corpus.py` as a module, for the benchmarks that reuse the default voice's corpus recipe as is
(its phrase splitter, labels, Festival voice and driver): `from corpus_recipe import recipe`."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_recipe() -> ModuleType:
    path = REPO / "recipes" / "slt" / "build_corpus.py"
    spec = importlib.util.spec_from_file_location("build_corpus", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


recipe = load_recipe()
