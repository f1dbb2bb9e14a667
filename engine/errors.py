"""The engine's one error base: input, files or settings the engine cannot use.

Every domain error (a bad avatar, undecodable audio, unusable training data...) subclasses
EngineError, so a command can turn exactly these into one line and exit status 2 while a bug
(any other exception) still shows its traceback.
"""
from __future__ import annotations


class EngineError(Exception):
    """Something the user can fix: the message is one sentence that says what and where."""


class UsageError(EngineError):
    """A command's options that do not fit together or name nothing usable."""
