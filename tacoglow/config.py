"""The one way a config dataclass is built from a plain dict (a checkpoint's or a JSON file's), and the mixin
that gives every config dataclass its ``to_dict``/``from_dict``."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .errors import TacoglowError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
C = TypeVar("C", bound="DictConfig")


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


class DictConfig:
    """Mixin of tacoglow's config dataclasses: to and from the plain dicts that checkpoints and JSON files
    hold (unknown keys refused by `dataclass_from_dict`)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(cast("DataclassInstance", self))

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        return cast(C, dataclass_from_dict(cast("type[DataclassInstance]", cls), d))
