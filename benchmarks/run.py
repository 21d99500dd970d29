"""One benchmark run: every section measured on the same audio, collected into one dict.

A section whose component is absent from this checkout (no reference teacher, no bundled model,
no ``edgeser`` script) is skipped with the reason recorded; any other failure is an error.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

import edgeser.model
from edgeser.audio import read_audio
from edgeser.contract import SAMPLE_RATE
from edgeser.incremental import IncrementalGraph, IncrementalScorer

from . import memory, students, teachers, throughput
from .config import REPO, BenchConfig
from .flops import count_macs
from .machine import machine_info
from .streaming import hop_pusher, rescoring
from .timing import Workload, measure

REFERENCE_CHECKPOINT = REPO / "distill" / "weights" / "reference_teacher.pt"


class Skip(Exception):
    """A section cannot run in this checkout; the message says why."""


def bench_audio(config: BenchConfig, seconds: float) -> np.ndarray:
    """The benchmark's audio (``config.audio``, tiled) cut to ``seconds``."""
    x = read_audio(config.path("audio"))
    return np.resize(x, round(seconds * SAMPLE_RATE)).astype(np.float32)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Run:
    """Collects results section by section; ``skipped`` records what could not run and why."""

    def __init__(self, config: BenchConfig, command: str, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir  # exported stand-in models, generated audio, label stores
        self.window = bench_audio(config, config.window_s)
        self.results: dict[str, Any] = {
            "command": command,
            "config": config.to_dict(),
            "machine": machine_info(REPO),
            "latency": [],
            "ratios": {},
            "sizes": [],
            "throughput": [],
            "skipped": [],
        }

    @functools.cached_property
    def wav2vec2(self) -> tuple[Any, int]:
        """The wav2vec2 teacher architecture (built once: it is large) and its parameters."""
        return teachers.wav2vec2_teacher(quick=self.config.quick)

    def section(self, what: str, fn, *args) -> Any:
        """Run one section; a ``Skip`` is recorded, not raised."""
        try:
            return fn(*args)
        except Skip as exc:
            self.results["skipped"].append({"what": what, "why": str(exc)})
            print(f"[bench] skipped {what}: {exc}", file=sys.stderr)
            return None

    def time(self, make: Callable[[int], list[Workload]], iterations: int, warmup: int = 1) -> None:
        """Time the workloads ``make(threads)`` builds, interleaved, at each thread count."""
        for threads in self.config.thread_counts:
            with torch_threads(threads):
                timed = measure(
                    make(threads), threads=threads, iterations=iterations, warmup=warmup
                )
                for lat in timed:
                    self.results["latency"].append(lat.to_dict())
                    print(
                        f"[bench] {lat.name} ({threads} thr): p50 {lat.p50_ms:.2f} ms, "
                        f"RTF {lat.rtf:.4f}",
                        file=sys.stderr,
                    )

    # -- sections ---------------------------------------------------------------------------

    def students(self, files: list[students.StudentFile]) -> None:
        """Latency per window of every student ONNX file through the runtime."""

        def workloads(threads: int) -> list[Workload]:
            out = []
            for f in files:
                model = edgeser.model.load(f.path, threads=threads)
                out.append(
                    Workload(
                        f"student {f.name}",
                        lambda m=model: m.score_window(self.window),
                        self.config.window_s,
                        params=f.params,
                        macs=f.macs,
                        note=f.origin,
                    )
                )
            return out

        self.time(workloads, self.config.student_iterations, warmup=3)
        for f in files:
            self.results["sizes"].append(
                {"what": f"student {f.name} ({f.origin})", "bytes": f.path.stat().st_size}
            )

    def streaming(self, default: students.StudentFile, stream: students.StreamStudent) -> None:
        """Per-hop cost of the streaming path: the default student re-scoring the window every
        hop, and the streamable student re-scoring vs. updating incrementally."""
        cfg = self.config
        audio = bench_audio(cfg, cfg.window_s + cfg.stream_seconds)
        hops = max(2, int(cfg.stream_seconds / cfg.hop_s))
        window_file = stream.window_model

        def workloads(threads: int) -> list[Workload]:
            base = edgeser.model.load(default.path, threads=threads)
            model = edgeser.model.load(window_file.path, threads=threads)
            graph = IncrementalGraph.beside(window_file.path, lambda p: open_session(p, threads))
            incremental = IncrementalScorer(
                graph, model.score_window, cfg.window_s, cfg.hop_s, model.info.min_samples
            )
            # Re-scoring explicitly: ``Model.scorer`` would hand out the incremental scorer for a
            # model with a streaming graph beside it, as the stream student has.
            pushers = [
                (default, rescoring(base, cfg.window_s, cfg.hop_s), "re-scoring"),
                (window_file, rescoring(model, cfg.window_s, cfg.hop_s), "re-scoring"),
                (window_file, incremental, "incremental"),
            ]
            return [
                Workload(
                    f"stream per hop, {how} ({f.name})",
                    hop_pusher(scorer, audio, cfg.window_s, cfg.hop_s),
                    cfg.hop_s,
                    params=f.params,
                    macs=stream.hop_macs if how == "incremental" else f.macs,
                    note=f.origin,
                )
                for f, scorer, how in pushers
            ]

        self.time(workloads, hops)
        self.results["sizes"].append(
            {
                "what": f"incremental graph {stream.graph.name} ({window_file.origin})",
                "bytes": stream.graph.stat().st_size,
            }
        )
        self.results["streaming"] = {
            "model": window_file.name,
            "window_s": cfg.window_s,
            "hop_s": cfg.hop_s,
            "macs_rescoring_per_hop": window_file.macs,
            "macs_incremental_per_hop": stream.hop_macs,
            "state_floats": IncrementalGraph.beside(window_file.path, open_session).state_floats,
        }

    def teachers(self) -> None:
        """Latency per window of the teachers (torch, CPU, inference mode)."""
        cfg = self.config
        w2v, w2v_params = self.wav2vec2
        arch = "tiny stand-in (--quick)" if cfg.quick else "audeering architecture"
        window = [self.window]
        found = [
            Workload(
                "teacher wav2vec2",
                lambda: w2v(window),
                cfg.window_s,
                params=w2v_params,
                macs=count_macs(lambda: w2v(window)),
                note=f"{arch}, random weights",
            )
        ]
        self.results["sizes"].append(
            {"what": "teacher wav2vec2 (fp32, from parameter count)", "bytes": 4 * w2v_params}
        )
        found.append(self.reference_teacher())
        self.time(lambda threads: found, cfg.teacher_iterations)

    def reference_teacher(self) -> Workload:
        teacher, params, origin = teachers.reference_teacher(REFERENCE_CHECKPOINT)
        if REFERENCE_CHECKPOINT.is_file():
            self.results["sizes"].append(
                {
                    "what": f"teacher reference ({REFERENCE_CHECKPOINT.name})",
                    "bytes": REFERENCE_CHECKPOINT.stat().st_size,
                }
            )
        window = [self.window]
        return Workload(
            "teacher reference",
            lambda: teacher(window),
            self.config.window_s,
            params=params,
            macs=count_macs(lambda: teacher(window)),
            note=origin,
        )

    def memory(self, model_file: students.StudentFile) -> None:
        """Peak RSS, memory added by loading, and cold start of ``edgeser score`` on 3 s."""
        clip = self.workdir / "clip-3s.wav"
        sf.write(clip, bench_audio(self.config, 3.0), SAMPLE_RATE, subtype="PCM_16")
        probe = memory.load_and_score(model_file.path, clip)
        self.results["memory"] = {"model": model_file.name, **probe}
        try:
            cold = memory.cold_start(model_file.path, clip, self.config.cold_start_runs)
        except RuntimeError as exc:
            raise Skip(f"cold start of `edgeser score`: {exc}") from None
        self.results["cold_start"] = {"model": model_file.name, **cold}

    def distill_throughput(self) -> None:
        """Labelling with each teacher and training the student through the distill pipeline,
        on every available device."""
        cfg = self.config
        corpus = throughput.write_corpus(
            self.workdir / "corpus", bench_audio(cfg, 8.0), cfg.label_crops
        )
        found = [
            ("wav2vec2", self.wav2vec2[0]),
            ("reference", teachers.reference_teacher(REFERENCE_CHECKPOINT)[0]),
        ]
        for device in throughput.devices():
            for name, teacher in found:
                move_teacher(teacher, device)
                store = self.workdir / f"labels-{name}-{device}"
                result = throughput.labelling(name, teacher, corpus, store, 8, device)
                self.results["throughput"].append(result.to_dict())
            trained = throughput.training(
                self.workdir / f"labels-wav2vec2-{device}",
                self.workdir / f"student-{device}",
                "wav2small",
                cfg.train_steps,
                cfg.train_batch,
                device,
            )
            self.results["throughput"].append(trained.to_dict())

    def ratios(self) -> None:
        """Speed ratios at one thread, from the medians (and from counted MACs)."""
        p50 = {r["name"]: r["p50_ms"] for r in self.results["latency"] if r["threads"] == 1}
        ratios = self.results["ratios"]
        int8 = next((v for k, v in p50.items() if k.startswith("student") and "int8" in k), None)
        for teacher in ("wav2vec2", "reference"):
            if int8 and f"teacher {teacher}" in p50:
                ratios[f"teacher_{teacher}_over_student_int8"] = p50[f"teacher {teacher}"] / int8
        one = [r for r in self.results["latency"] if r["threads"] == 1]
        rescoring = [r for r in one if "re-scoring (wav2small-stream" in r["name"]]
        incremental = [r for r in one if "incremental (wav2small-stream" in r["name"]]
        if rescoring and incremental:
            for key, suffix in (("p50_ms", ""), ("cpu_p50_ms", "_cpu")):
                ratios[f"rescoring_over_incremental_per_hop{suffix}"] = (
                    rescoring[0][key] / incremental[0][key]
                )
        stream = self.results.get("streaming")
        if stream:
            ratios["rescoring_over_incremental_macs"] = (
                stream["macs_rescoring_per_hop"] / stream["macs_incremental_per_hop"]
            )


def move_teacher(teacher, device: str) -> None:
    """Put a torch teacher (wav2vec2 or reference) on ``device``."""
    teacher.model.to(device)
    if hasattr(teacher, "device"):
        teacher.device = device


def open_session(path: Path, threads: int = 1):
    """An onnxruntime session opened as the runtime opens its models."""
    return edgeser.model._open_session(path, threads)


def run(config: BenchConfig, command: str) -> dict[str, Any]:
    """Measure everything in ``config``; the results as one JSON-ready dict."""
    with tempfile.TemporaryDirectory(prefix="edgeser-bench-") as tmp:
        run = Run(config, command, Path(tmp))
        with torch_threads(1):
            window, hop = config.window_s, config.hop_s
            files = students.bundled_students(window)
            files += students.extra_students([config.path_of(p) for p in config.students], window)
            files += students.random_students(run.workdir, window, hop)
            stream = students.random_stream_student(run.workdir, window, hop)
            default = next(f for f in files if "int8" in f.name)
            run.students(files)
            run.streaming(default, stream)
            run.section("memory and cold start", run.memory, default)
            run.teachers()
        with torch_threads(config.threads):
            run.distill_throughput()
        run.ratios()
    return run.results
