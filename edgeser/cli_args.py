"""What the three command lines share: one-line errors, number flags in words, missing extras.

Every command-line error of ``edgeser``, ``edgeser-distill`` and ``edgeser-export`` is one line
``PROG: error: ...`` on stderr and exit code 2: no usage block, no traceback, no internal names.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .limits import Range

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the command, not the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: message`` (PROG: the top command, also for a sub-command)."""
        self.exit(USAGE_ERROR, f"{self.prog.split()[0]}: error: {message}\n")


class OneLineFormatter(logging.Formatter):
    """Log lines without the traceback of a record's exception (shown with ``verbose``): a
    message is one line, the traceback is for whoever asks for it (``-v``)."""

    def __init__(self, fmt: str, verbose: bool = False) -> None:
        super().__init__(fmt)
        self._verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        """The record's message line (and its traceback when verbose)."""
        if self._verbose or not (record.exc_info or record.exc_text or record.stack_info):
            return super().format(record)
        bare = {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None}
        return super().format(logging.makeLogRecord(bare))


def nonempty_path(text: str) -> str:
    """argparse type: a path that is not empty (``""`` names no file; as a folder it would be
    the current one)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no file or folder")
    return text


def whole_number(limits: Range | None = None) -> Callable[[str], int]:
    """argparse type: an integer, within ``limits`` if given; the error says so in words."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        _check(value, limits, text)
        return value

    return parse


def number(limits: Range | None = None) -> Callable[[str], float]:
    """argparse type: a finite number, within ``limits`` if given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        _check(value, limits, text)
        return value

    return parse


def _check(value: float, limits: Range | None, text: str) -> None:
    """ArgumentTypeError unless ``value`` is within ``limits`` (None: any value)."""
    if limits is not None and not limits.contains(value):
        raise argparse.ArgumentTypeError(f"must be {limits}, got {text}")


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that this Python cannot import (looked up, not imported)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_extra(prog: str, extra: str, modules: Sequence[str]) -> None:
    """Exit with one line naming the extra to install when any of ``modules`` is missing
    (a runtime-only install has the workstation commands but not what they need)."""
    missing = missing_modules(modules)
    if missing:
        print(
            f"{prog}: error: needs the [{extra}] extra ({', '.join(missing)} not installed): "
            f"install edgeser with it, e.g. pip install '.[{extra}]' in a clone "
            "(see Install in docs/getting-started.md)",
            file=sys.stderr,
        )
        raise SystemExit(USAGE_ERROR)
