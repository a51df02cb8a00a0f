"""The one way a config dataclass is built from a plain dict (a checkpoint's or a JSON file's)."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """``cls(**d)``, refusing keys the dataclass does not have with a ValueError that lists them."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; expected a subset of {sorted(known)}")
    return cls(**d)
