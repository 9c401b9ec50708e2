"""Errors whose message is the whole story: ``lmcpipe.cli.main`` prints them as one line.

A user's mistake (a bad flag value: ``InputError``), a damaged or missing dataset
(``lmcpipe.data.DataError``) and a diverged run are ``StageError``s: one line on stderr, no
traceback. Anything else is a bug and keeps its traceback.

Kept free of torch and of other lmcpipe modules, so the CLI can catch them before a stage's
heavy imports.
"""

from __future__ import annotations


class StageError(Exception):
    """A failure with a complete one-line message (what is wrong, where, what to do)."""


class InputError(StageError, ValueError):
    """A value given to a stage is wrong: malformed JSON, a missing or unknown key, a value of
    the wrong type. The message names the key (``key 'lr': expected a number, got the string
    "0.1"``); the flag is named by whoever reads it (argparse, ``lmcpipe.hparams.JsonFlag``)."""


class Diverged(StageError):
    """A run whose training loss became NaN or infinite: nothing of it is written."""

    def __init__(self, step: int, loss: float, run: str = "", member: int = 0) -> None:
        self.step, self.loss, self.run, self.member = step, loss, run, member
        where = f"run {run}: " if run else ""
        super().__init__(f"{where}training loss is {loss} at step {step}: the run diverged "
                         "(lower the learning rate or add warmup); nothing was written")

    def of(self, run: str) -> Diverged:
        """The same error naming ``run`` (its directory)."""
        return Diverged(self.step, self.loss, run)
