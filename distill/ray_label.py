"""Label stage on a Ray cluster: ``edgeser-distill label --ray auto|ADDRESS``.

The driver plans the crops as the single-machine path does, cuts those the store lacks into the
same length-sorted batches (``label.label_batches``) and streams them through Ray Data: workers
regenerate each crop's audio from its description (``data.CropAudio``), an actor pool runs the
teacher (loaded once per actor), and the driver commits each batch to the same ``LabelStore``,
one chunk per batch, as the results stream back. Keys, store and batches are those of the
single-machine path, so a run can switch between the two and resume either way; killing the
driver loses at most the batches in flight, and a crop is never committed twice. The driver
claims its batches like any writer of the store (``claims.py``), so single-machine writers
running at the same time label the others, and it takes over those of writers that die.

With GPU actors, decoding runs in its own autoscaling pool of CPU actors so the GPUs never wait
on it; CPU actors decode their own batches (a small share of a CPU teacher's time, and the
decoded-file cache stays local). Ray is imported here only, inside the functions, so the
runtime and the single-machine pipeline never need it.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from edgeser.errors import EdgeserError

from .augment import NoiseBank
from .claims import BatchClaims
from .config import ConfigError, LabelConfig
from .data import Crop, CropAudio
from .label import LabelReport, label_batches, plan_label, regenerate
from .store import LabelStore
from .teachers.loading import (
    TeacherError,
    category_labels,
    check_output,
    load_teacher,
    set_torch_threads,
)

RAY_INSTALL = "pip install 'edgeser[ray]'"
BATCHES_PER_BLOCK = 4  # teacher batches per Ray Data block (one task's worth of work)
DECODE_CACHE_MB = 512  # decoded-file cache of each decoding actor


class RayLabelError(EdgeserError):
    """Ray is not installed, no cluster is reachable, or the cluster cannot run the teacher."""


@dataclass(frozen=True)
class WorkerPlan:
    """How many teacher actors, what each one holds, and how many decoding actors (0: the
    teacher actors decode their own batches)."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    device: str
    decoders: int


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a RayLabelError saying how to install it."""
    try:
        import ray
        import ray.data  # the pipeline needs Ray Data, not only Ray core
    except ImportError as exc:
        raise RayLabelError(
            f"labelling on Ray needs Ray Data, which is not installed ({exc}); {RAY_INSTALL}"
        ) from None
    return ray


def connect(address: str) -> bool:
    """Join the cluster at ``address`` ("auto": the one this machine belongs to; "local": a new
    single-machine cluster). Returns whether this call connected (and so should disconnect);
    a session already open in this process (a notebook, a test) is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    try:
        ray.init(address=None if address == "local" else address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayLabelError(
            f"cannot reach a Ray cluster at {address!r} ({exc}); start one with "
            "`ray start --head` or pass its address (HOST:6379 or ray://HOST:10001)"
        ) from None
    return True


def plan_workers(cfg: LabelConfig, resources: dict[str, float]) -> WorkerPlan:
    """Teacher actors for a cluster with ``resources`` (Ray's ``cluster_resources()``): one per
    ``ray_num_gpus`` GPUs when GPUs are there and ``device`` allows, else one per
    ``num_threads`` CPUs (1 when 0); ``ray_actors`` > 0 fixes the number."""
    if cfg.ray_actors < 0 or cfg.ray_num_gpus < 0:
        raise ConfigError("label.ray_actors and label.ray_num_gpus must be >= 0")
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    use_gpu = cfg.device != "cpu" and 0 < cfg.ray_num_gpus <= gpus
    if cfg.device == "cuda" and not use_gpu:
        raise ConfigError(
            f"label.device is cuda but the Ray cluster has {gpus:g} GPU(s) for actors of "
            f"{cfg.ray_num_gpus:g} GPU(s) each (set ray_num_gpus > 0, or device = auto or cpu)"
        )
    if use_gpu:
        actors = cfg.ray_actors or max(1, int(gpus // cfg.ray_num_gpus))
        return WorkerPlan(actors, 1.0, cfg.ray_num_gpus, "cuda", max(1, int(cpus) - actors))
    threads = max(1, cfg.num_threads)
    actors = cfg.ray_actors or max(1, int(cpus // threads))
    return WorkerPlan(actors, float(threads), 0.0, "cpu", 0)


def teacher_identity(spec: str, max_chunk_s: float) -> tuple[str, tuple[str, ...]]:
    """The id and category labels of teacher ``spec`` as a worker loads it (run as a Ray task
    by the driver)."""
    teacher = load_teacher(spec, device="cpu", max_chunk_s=max_chunk_s)
    return teacher.teacher_id, category_labels(teacher)


def decode_batch(crops_jsonl: str, audio: CropAudio) -> dict[str, Any]:
    """One batch of crop descriptions (JSON lines) -> the crops that regenerated, their
    waveforms end to end (float32 bytes), and the files that failed with the reason."""
    batch = [Crop.from_json(line) for line in crops_jsonl.splitlines()]
    ready, waves, failed = regenerate(batch, audio)
    return {
        "n": len(batch),
        "crops": "\n".join(c.to_json() for c in ready),
        "lengths": json.dumps([len(w) for w in waves]),
        "audio": b"".join(w.astype(np.float32).tobytes() for w in waves),
        "failed": json.dumps(failed),
    }


def split_waves(audio: bytes, lengths: list[int]) -> list[np.ndarray]:
    """Undo ``decode_batch``'s concatenation (into writable arrays, as teachers get elsewhere)."""
    flat = np.frombuffer(audio, dtype=np.float32).copy()
    return np.split(flat, np.cumsum(lengths)[:-1]) if lengths else []


class CropDecoder:
    """Ray Data callable class: regenerate the audio of each batch (CPU actors)."""

    def __init__(self, noise: NoiseBank):
        self.audio = CropAudio(noise, cache_mb=DECODE_CACHE_MB)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        return _columns([decode_batch(str(c), self.audio) for c in rows["crops"]])


class TeacherWorker:
    """Ray Data callable class: load the teacher once, then label each batch of the block
    (decoding it first unless a decoding stage already did). Project errors (a teacher that
    cannot load or returns the wrong shape) travel back in the rows, pickled, so the driver
    raises them as they are instead of as a remote traceback."""

    def __init__(
        self, spec: str, teacher_id: str, plan: WorkerPlan, cfg: LabelConfig, noise: NoiseBank
    ):
        self.embeddings = cfg.store_embeddings
        self.audio = CropAudio(noise, cache_mb=DECODE_CACHE_MB)
        self.error = b""
        try:
            if plan.device == "cpu":
                set_torch_threads(max(1, int(plan.cpus_per_actor)))
            self.teacher = load_teacher(spec, device=plan.device, max_chunk_s=cfg.max_chunk_s)
            if self.teacher.teacher_id != teacher_id:
                raise TeacherError(
                    f"teacher {spec!r} loads as {self.teacher.teacher_id} on this worker but "
                    f"as {teacher_id} on the first one: its files differ between nodes"
                )
        except EdgeserError as exc:
            self.error = pickle.dumps(exc)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        if "audio" not in rows:
            rows = _columns([decode_batch(str(c), self.audio) for c in rows["crops"]])
        out = [self.label(*row) for row in zip(*(rows[k] for k in _DECODED), strict=True)]
        return _columns(out)

    def label(self, n: int, crops: str, lengths: str, audio: bytes, failed: str) -> dict:
        """Teacher readings of one decoded batch as bytes (float32 [N, 3], [N, D] and the
        category probabilities [N, K])."""
        row = {"n": int(n), "crops": "", "adv": b"", "embedding": b"", "categories": b"",
               "failed": str(failed), "error": self.error}  # fmt: skip
        waves = split_waves(audio, json.loads(lengths))
        if self.error or not waves:
            return row
        try:
            labels = category_labels(self.teacher)
            out = check_output(self.teacher(waves), len(waves), self.teacher.teacher_id, labels)
        except EdgeserError as exc:
            return {**row, "error": pickle.dumps(exc)}
        emb = out.embedding if self.embeddings else None
        return {
            **row,
            "crops": str(crops),
            "adv": out.adv.astype(np.float32).tobytes(),
            "embedding": b"" if emb is None else emb.astype(np.float32).tobytes(),
            "categories": b"" if out.categories is None else out.categories.tobytes(),
        }


_DECODED = ("n", "crops", "lengths", "audio", "failed")


def _columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    """Rows -> the column dict Ray Data expects from a map_batches function."""
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def label_crops_ray(
    crops: list[Crop],
    spec: str,
    store: LabelStore,
    cfg: LabelConfig,
    plan: WorkerPlan,
    noise: NoiseBank | None = None,
    progress: bool = True,
) -> LabelReport:
    """Label the crops the store lacks on the connected Ray cluster, committing one chunk per
    batch from the driver; the Ray counterpart of ``label.label_crops``."""
    noise = noise or NoiseBank()
    done = store.done_keys()
    report = LabelReport(planned=len(crops), already_done=sum(c.key in done for c in crops))
    claims = BatchClaims(store, label_batches(crops, cfg.batch_size))
    start = time.perf_counter()
    total = report.planned - report.already_done
    with tqdm(total=total, unit="crop", desc="label (ray)", disable=not progress) as bar:
        while group := claims.take(limit=0):  # all free batches; more if other writers die
            try:
                for row in labelled_rows(group, spec, store, cfg, plan, noise):
                    if len(row["error"]):
                        raise pickle.loads(row["error"])  # from our own workers: trusted
                    commit(row, store, done, report)
                    report.wall_s = time.perf_counter() - start
                    bar.update(int(row["n"]))
                    bar.set_postfix(h_per_min=f"{report.hours_per_minute:.3f}",
                                    failed=len(report.failed))  # fmt: skip
            except BaseException:
                claims.release()
                raise
            for batch in group:
                claims.finish(batch)
    report.count_others(crops, store)
    return report


def labelled_rows(
    group: list[list[Crop]],
    spec: str,
    store: LabelStore,
    cfg: LabelConfig,
    plan: WorkerPlan,
    noise: NoiseBank,
) -> Iterator[dict[str, Any]]:
    """The teacher's readings of each batch of ``group``, streamed back from the cluster."""
    ray = import_ray()
    batches = ["\n".join(c.to_json() for c in b) for b in group]
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's tqdm bar counts committed crops instead
    ds = ray.data.from_items(
        [{"crops": b} for b in batches],
        override_num_blocks=math.ceil(len(batches) / BATCHES_PER_BLOCK),
    )
    if plan.decoders:
        ds = ds.map_batches(
            CropDecoder,
            fn_constructor_kwargs={"noise": noise},
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.decoders),
            num_cpus=1,
        )
    ds = ds.map_batches(
        TeacherWorker,
        fn_constructor_kwargs=dict(
            spec=spec, teacher_id=store.teacher_id, plan=plan, cfg=cfg, noise=noise
        ),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor,
    )
    yield from ds.iter_rows()


def commit(row: dict[str, Any], store: LabelStore, done: set[str], report: LabelReport) -> None:
    """Append one labelled batch to the store (crops already there are dropped, so a batch
    that Ray happened to compute twice is never committed twice) and count it."""
    report.failed.update(json.loads(row["failed"]))
    crops = [Crop.from_json(t) for t in str(row["crops"]).splitlines()]
    if not crops:
        return
    adv = np.frombuffer(row["adv"], dtype=np.float32).reshape(len(crops), 3)
    emb, probs = (
        np.frombuffer(row[k], dtype=np.float32).reshape(len(crops), -1) if len(row[k]) else None
        for k in ("embedding", "categories")
    )
    fresh = np.array([c.key not in done for c in crops], dtype=bool)
    if not fresh.any():
        return
    new = [c for c, f in zip(crops, fresh, strict=True) if f]
    store.append(new, adv[fresh], *(None if a is None else a[fresh] for a in (emb, probs)))
    done.update(c.key for c in new)
    report.labelled += len(new)
    report.audio_s += sum(c.seconds for c in new)


def run_label_ray(cfg: LabelConfig, progress: bool = True) -> LabelReport:
    """``run_label`` on the Ray cluster ``cfg.ray`` names: plan the crops, check the teacher on
    a worker, and label into ``cfg.store`` with actors sized to the cluster."""
    ray = import_ray()
    cfg.validate()
    if len(cfg.teachers) != 1 or cfg.calibration:
        raise ConfigError("label.ray: a teacher ensemble labels on this machine only (no ray)")
    spec = cfg.teachers[0]
    crop_plan, noise = plan_label(cfg)
    started = connect(cfg.ray)
    try:
        try:
            teacher_id, labels = ray.get(
                ray.remote(num_cpus=1)(teacher_identity).remote(spec, cfg.max_chunk_s)
            )
        except Exception as exc:
            raise _edgeser_cause(exc) or exc from None
        store = LabelStore.open(
            cfg.store, teacher_id, teacher=spec, categories=labels, repair=cfg.repair
        )
        workers = plan_workers(cfg, ray.cluster_resources())
        if progress:
            print(
                f"{crop_plan.n_files} files, {len(crop_plan.crops)} crops "
                f"({crop_plan.seconds / 3600:.2f} h), "
                f"{len(crop_plan.skipped)} files skipped; teacher {teacher_id}; Ray: "
                f"{workers.actors} {workers.device} actor(s), {workers.decoders} decoder(s)",
                file=sys.stderr,
            )
        try:
            report = label_crops_ray(crop_plan.crops, spec, store, cfg, workers, noise, progress)
        finally:
            store.close()
    finally:
        if started:
            ray.shutdown()
    report.skipped_files, report.repaired = crop_plan.skipped, [str(p) for p in store.repaired]
    return report


def _edgeser_cause(exc: BaseException | None) -> EdgeserError | None:
    """The project error behind a Ray task's failure, unwrapped from Ray's wrapper (which
    subclasses it too) so that the CLI prints its message, not a remote traceback."""
    from ray.exceptions import RayError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, EdgeserError) and not isinstance(exc, RayError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None
