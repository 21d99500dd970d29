"""Typed errors: every bad input surfaces as one of these, with a message naming the problem."""

from __future__ import annotations


class EdgeserError(Exception):
    """Base class of all errors raised on purpose by edgeser."""


class AudioError(EdgeserError, ValueError):
    """The audio cannot be scored: empty, too short, non-finite, wrong shape or dtype, bad rate."""


class AudioFileError(AudioError):
    """An audio file is missing, unreadable, truncated or not audio at all."""


class ModelError(EdgeserError):
    """A model file is missing, is not ONNX, or does not follow the edgeser model contract."""


class DeviceError(EdgeserError):
    """A live-audio device cannot be found or opened."""


class ConfigError(EdgeserError, ValueError):
    """A setting is out of range, of the wrong type, or unknown (window, hop, threads, TOML)."""


class DependencyError(EdgeserError, ImportError):
    """A runtime dependency is installed as a build known not to run here (what to do: named)."""
