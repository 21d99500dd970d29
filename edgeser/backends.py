"""Which inference backend runs a model: onnxruntime (fast, compiled) or the numpy-only
``edgeser.numpy_backend`` (for devices without onnxruntime wheels). Both hand out sessions
with the same small interface (``Session``)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any, Protocol

from .errors import ConfigError
from .notices import first_time

ONNXRUNTIME, NUMPY = "onnxruntime", "numpy"
BACKENDS = (ONNXRUNTIME, NUMPY)
ENV_BACKEND = "EDGESER_BACKEND"  # onnxruntime, numpy, or auto / unset: onnxruntime if importable

log = logging.getLogger("edgeser")
_announced: set[str] = set()  # automatic choices already logged in this process


class Session(Protocol):
    """The part of onnxruntime's InferenceSession the runtime uses."""

    def get_inputs(self) -> Sequence[Any]: ...

    def get_outputs(self) -> Sequence[Any]: ...

    def get_modelmeta(self) -> Any: ...

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]: ...


@functools.cache
def onnxruntime_import_error() -> str | None:
    """None when onnxruntime imports, else the import error's message (tried once)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return str(exc) or type(exc).__name__
    return None


def resolve_backend(backend: str | None = None) -> str:
    """The backend to use: ``backend`` if given, else ``$EDGESER_BACKEND``, else onnxruntime
    when it imports and numpy otherwise (saying so in one warning per install, see
    ``edgeser.notices``, and a debug line in later processes). ConfigError
    for an unknown name, or onnxruntime asked for where it cannot be imported."""
    name = (backend if backend is not None else os.environ.get(ENV_BACKEND, "")).strip().lower()
    error = onnxruntime_import_error() if name in ("", "auto", ONNXRUNTIME) else None
    if name in ("", "auto"):
        if error is None:
            return ONNXRUNTIME
        if NUMPY not in _announced:
            _announced.add(NUMPY)
            level = logging.WARNING if first_time("numpy-backend") else logging.DEBUG
            log.log(level, "onnxruntime is not importable (%s); using the numpy backend", error)
        return NUMPY
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)} or auto, got {name!r}")
    if error is not None:
        raise ConfigError(f"backend 'onnxruntime' is not importable ({error}); use 'numpy'")
    return name
