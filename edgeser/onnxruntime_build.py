"""onnxruntime builds on a Raspberry Pi. Refuses, before it is imported, the one build known to
kill the process: PyPI's 1.21.0 aarch64 wheel dies with "Illegal instruction" (SIGILL, no
traceback) on a Cortex-A72 or A53 (Pi 4, Pi 3, Zero 2 W). A distribution's build of the same
version (Debian's 1.21.0+dfsg) is compiled for the baseline core and runs, and a version range
cannot tell the two apart, so the check reads the wheel tags in the installed metadata. And
quiets Debian's build, whose first session prints ~570 harmless "Schema error" lines."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata

from .errors import DependencyError

BROKEN_VERSION = "1.21.0"
# Debian's onnxruntime registers ONNX's operator schemas twice and says so for each one.
SCHEMA_NOISE = "Schema error: Trying to register schema with name "


def wheel_tags(dist: metadata.Distribution) -> list[str]:
    """The ``Tag:`` lines of a distribution's WHEEL file (none for a distribution's own build
    that ships no WHEEL file)."""
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def is_broken_wheel(version: str, tags: list[str]) -> bool:
    """True for PyPI's onnxruntime 1.21.0 aarch64 wheel (a manylinux tag), not for a local or
    distribution build of 1.21.0 (``linux_aarch64`` or no tag) nor for other versions."""
    return version == BROKEN_VERSION and any(
        "manylinux" in tag and tag.endswith("aarch64") for tag in tags
    )


def refuse_broken_onnxruntime() -> None:
    """Raise ``DependencyError`` naming the fix if the installed onnxruntime is that wheel."""
    try:
        dist = metadata.distribution("onnxruntime")
    except metadata.PackageNotFoundError:
        return  # the import itself will say it is missing
    if is_broken_wheel(dist.version, wheel_tags(dist)):
        raise DependencyError(
            f"onnxruntime {BROKEN_VERSION} from PyPI (aarch64 wheel) dies with 'Illegal "
            "instruction' on a Raspberry Pi 3/4 or Zero 2 W; install another version: "
            "pip install 'onnxruntime>=1.17,!=1.21.0'"
        )


@contextlib.contextmanager
def without_schema_noise() -> Iterator[None]:
    """Drop the "Schema error: ... already registered" lines that Debian's onnxruntime writes
    to stderr (file descriptor 2, from C++) while it creates its first session; whatever else
    is written meanwhile is passed on to descriptor 2, where it was going (the ``edgeser``
    command points that at /dev/null unless ``-v``). Without a usable descriptor 2 (``2>&-``:
    ``sys.stderr`` is then None), nothing is filtered."""
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            noise = any(line.startswith(SCHEMA_NOISE) for line in lines)
            kept = [line for line in lines if not line.startswith(SCHEMA_NOISE)]
            text = "".join(line for line in kept if line.strip() or not noise)
            with contextlib.suppress(OSError):  # a reader that left
                os.write(2, text.encode(errors="surrogateescape"))


# At `import edgeser`, before anything can import onnxruntime (which the runtime does lazily,
# so that the numpy backend works where it is not installed at all).
refuse_broken_onnxruntime()
