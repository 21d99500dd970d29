"""edgeser: on-device speech emotion recognition (arousal, dominance, valence)."""

__version__ = "0.1.0"
