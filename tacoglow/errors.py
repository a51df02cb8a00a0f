"""The one base class of tacoglow's domain errors.

Every error the package raises on purpose (a bad checkpoint, a bad dataset, a refused setting, a failed
synthesis) derives from `TacoglowError`, so a caller can catch them all in one clause and the command line
can tell them apart from bugs: a `TacoglowError` is reported in one line naming the file, key or value and
what to do; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class TacoglowError(Exception):
    """Base class of the errors tacoglow raises deliberately; the message says what to do."""
