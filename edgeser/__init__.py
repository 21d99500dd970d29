"""edgeser: on-device speech emotion recognition (arousal, dominance, valence).

``edgeser.load()`` a model, then ``model.predict(signal, rate)`` a clip,
``model.score_file(path)`` a file, or iterate an ``edgeser.Stream`` over live audio.
"""

from .errors import (
    AudioError,
    AudioFileError,
    ConfigError,
    DependencyError,
    DeviceError,
    EdgeserError,
    ModelError,
)
from .model import Model, load
from .readings import FileScore, Reading
from .sources import BlockSource, DeviceSource, FileSource
from .stream import Stream, StreamStats
from .vad import EnergyVad, NoiseFloorVad, VoiceGate

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "AudioFileError",
    "BlockSource",
    "ConfigError",
    "DependencyError",
    "DeviceError",
    "DeviceSource",
    "EdgeserError",
    "EnergyVad",
    "FileScore",
    "FileSource",
    "Model",
    "ModelError",
    "NoiseFloorVad",
    "Reading",
    "Stream",
    "StreamStats",
    "VoiceGate",
    "__version__",
    "load",
]
