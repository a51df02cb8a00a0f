"""The one way a config dataclass is built from a plain dict (a checkpoint's or a JSON file's)."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import TacoglowError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class ConfigError(TacoglowError, ValueError):
    """A refused setting: an unknown key or a bad value.

    ``key`` names the field when the error is about one; the message then starts with that name, so a
    reader can prefix where the setting came from (``voice.pt: synthesis.griffin_lim_power must be ...``).
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def dataclass_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """``cls(**d)``, refusing keys the dataclass does not have with a ConfigError that lists them."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; expected a subset of {sorted(known)}")
    return cls(**d)
