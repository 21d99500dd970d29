"""Typed configuration of a benchmark run (TOML-loadable); ``--quick`` shrinks every workload."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from edgeser.distill.config import from_dict, read_toml

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = "benchmarks"  # the committed results
QUICK_DIR = "runs/benchmarks-quick"  # where --quick writes unless told (git-ignored)


@dataclass
class BenchConfig:
    """What to measure and how long. Paths are relative to the repository root."""

    out_dir: str = RESULTS_DIR
    audio: str = "examples/speech.wav"
    threads: int = 1  # also measured with this many threads when > 1 (1 thread always)
    window_s: float = 3.0
    hop_s: float = 0.25
    student_iterations: int = 200
    teacher_iterations: int = 5
    stream_seconds: float = 30.0  # audio pushed through the streaming path, hop by hop
    cold_start_runs: int = 5
    label_crops: int = 32  # crops labelled by each teacher for the throughput figure
    train_steps: int = 10
    train_batch: int = 32
    quick: bool = False  # tiny teacher architectures and few iterations: checks, not figures
    students: list[str] = dataclasses.field(default_factory=list)  # trained ONNX files to time

    def quickened(self) -> BenchConfig:
        """This config shrunk to a run of seconds: the code paths of a full run, not figures,
        written into ``QUICK_DIR`` instead of over the committed results."""
        return dataclasses.replace(
            self,
            out_dir=QUICK_DIR if self.out_dir == RESULTS_DIR else self.out_dir,
            student_iterations=5,
            teacher_iterations=1,
            stream_seconds=4.0,
            cold_start_runs=1,
            label_crops=4,
            train_steps=2,
            train_batch=4,
            quick=True,
        )

    @classmethod
    def from_toml(cls, path: str | Path) -> BenchConfig:
        """Read a ``[bench]`` table; unknown keys or wrong types are a ConfigError."""
        data = read_toml(path)
        return from_dict(cls, data.get("bench", {}), "bench")

    def path(self, name: str) -> Path:
        """A configured path, resolved against the repository root."""
        return self.path_of(getattr(self, name))

    def path_of(self, path: str) -> Path:
        """A path from the config, resolved against the repository root."""
        return (REPO / path).resolve()

    @property
    def thread_counts(self) -> list[int]:
        """Thread counts to measure: 1, and ``threads`` when larger."""
        return sorted({1, max(1, self.threads)})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
