"""Notices shown once per install, not on every run: a marker file in the user's cache folder
(``$XDG_CACHE_HOME/edgeser``, else ``~/.cache/edgeser``) says this install showed one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """The user's cache folder of edgeser (honouring ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgeser"


def first_time(notice: str) -> bool:
    """True the first time this install (its folder and version) shows ``notice``, recording
    it; also True where the marker cannot be written (a notice repeated beats one never seen)."""
    from . import __version__  # here: edgeser/__init__.py imports this module's importers

    install = f"{Path(__file__).resolve().parent} {__version__}".encode()
    marker = cache_dir() / f"{notice}-{hashlib.sha256(install).hexdigest()[:16]}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True
