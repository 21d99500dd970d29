"""The model contract: what every edgeser ONNX model takes, returns and declares.

export/ writes exactly this; the runtime validates it on load. One module so both sides agree.

- Input ``signal``: raw mono waveform, float32, 16 kHz, shape [batch, samples], dynamic axes,
  at least ``MIN_SAMPLES`` long. The model normalises internally; callers only resample,
  down-mix and convert dtype.
- Output ``adv``: [batch, 3], arousal, dominance, valence in that order, about 0..1.
- Optional output ``embedding``: [batch, D], the pooled vector before the head.
- Optional output ``categories``: [batch, K] float32, the probabilities of K emotion categories
  (each in [0, 1], each row summing to 1, both within ``CATEGORY_TOLERANCE``), present if and
  only if the metadata key ``edgeser.categories`` names them: a JSON list of K >= 2 unique,
  non-empty label names in output order (not a name of a csv column: ``RESERVED_NAMES``).
  A streaming graph beside the model (``edgeser.incremental``) has the same output iff it does.
- ``metadata_props``: the keys in ``REQUIRED_METADATA`` (and optionally ``OPTIONAL_METADATA``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SAMPLE_RATE = 16_000
LABELS: tuple[str, str, str] = ("arousal", "dominance", "valence")
MIN_SECONDS = 0.25
MIN_SAMPLES = int(MIN_SECONDS * SAMPLE_RATE)
# Sane bounds for any model's (and any caller's) window and hop: a window longer than a minute
# or a hop shorter than 10 ms is a mistake, and would cost gigabytes or a reading per sample.
MAX_WINDOW_S = 60.0
MIN_HOP_S = 0.01
CONTRACT_VERSION = "1"

INPUT_NAME = "signal"
FLOAT32_TYPE = "tensor(float)"  # onnxruntime's spelling of float32 (the numpy reader's too)
OUTPUT_ADV = "adv"
OUTPUT_EMBEDDING = "embedding"
OUTPUT_CATEGORIES = "categories"
# How far a category probability may stray from [0, 1], and a row's sum from 1 (float32 and
# int8 rounding stay far inside it; logits or per-class sigmoids do not).
CATEGORY_TOLERANCE = 0.01
# Column and key names of edgeser's rows, which a category may not take.
RESERVED_NAMES = ("file", "start_s", "end_s", *LABELS, "voiced", "emotion", OUTPUT_CATEGORIES)

META_CONTRACT = "edgeser.contract"
META_SAMPLE_RATE = "edgeser.sample_rate"
META_LABELS = "edgeser.labels"
META_WINDOW_S = "edgeser.window_s"
META_HOP_S = "edgeser.hop_s"
META_MIN_SAMPLES = "edgeser.min_samples"
META_MODEL_VERSION = "edgeser.model_version"
META_TEACHER = "edgeser.teacher"
META_MODEL_CARD = "edgeser.model_card"
META_CATEGORIES = "edgeser.categories"

REQUIRED_METADATA = (
    META_CONTRACT,
    META_SAMPLE_RATE,
    META_LABELS,
    META_WINDOW_S,
    META_HOP_S,
    META_MODEL_VERSION,
    META_TEACHER,
    META_MODEL_CARD,
)

# Declared by models that take a shorter (or need a longer) input than MIN_SAMPLES, and by
# models with a categorical head.
OPTIONAL_METADATA = (META_MIN_SAMPLES, META_CATEGORIES)


@dataclass(frozen=True)
class ModelInfo:
    """The contract metadata of one model file, parsed and checked."""

    sample_rate: int
    labels: tuple[str, ...]
    window_s: float
    hop_s: float
    model_version: str
    teacher: str
    card: dict[str, Any] = field(default_factory=dict)
    min_samples: int = MIN_SAMPLES
    categories: tuple[str, ...] = ()  # the labels of the ``categories`` output; () = no head

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` that declare this info in an ONNX file."""
        head = {META_CATEGORIES: json.dumps(list(self.categories))} if self.categories else {}
        return {
            META_CONTRACT: CONTRACT_VERSION,
            META_SAMPLE_RATE: str(self.sample_rate),
            META_LABELS: ",".join(self.labels),
            META_WINDOW_S: repr(float(self.window_s)),
            META_HOP_S: repr(float(self.hop_s)),
            META_MIN_SAMPLES: str(self.min_samples),
            META_MODEL_VERSION: self.model_version,
            META_TEACHER: self.teacher,
            META_MODEL_CARD: json.dumps(self.card, sort_keys=True),
            **head,
        }


def parse_metadata(meta: dict[str, str]) -> ModelInfo:
    """Check ``metadata_props`` against the contract; raise ValueError naming what is wrong."""
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")
    if meta[META_CONTRACT] != CONTRACT_VERSION:
        raise ValueError(
            f"contract version {meta[META_CONTRACT]!r} is not the supported {CONTRACT_VERSION!r}"
        )
    labels = tuple(meta[META_LABELS].split(","))
    if labels != LABELS:
        raise ValueError(f"labels {labels} are not {LABELS}")
    try:
        rate = int(meta[META_SAMPLE_RATE])
        window_s = float(meta[META_WINDOW_S])
        hop_s = float(meta[META_HOP_S])
        min_samples = int(meta.get(META_MIN_SAMPLES, MIN_SAMPLES))
        card = json.loads(meta[META_MODEL_CARD])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed contract metadata: {exc}") from None
    if rate != SAMPLE_RATE:
        raise ValueError(f"sample rate {rate} is not {SAMPLE_RATE}")
    if not 1 <= min_samples <= MAX_WINDOW_S * SAMPLE_RATE:
        raise ValueError(
            f"{META_MIN_SAMPLES} {min_samples} is not in [1, {MAX_WINDOW_S * SAMPLE_RATE:.0f}]"
        )
    if not min_samples / SAMPLE_RATE <= window_s <= MAX_WINDOW_S:
        raise ValueError(
            f"{META_WINDOW_S} {window_s} s is not in [{min_samples / SAMPLE_RATE:g}, "
            f"{MAX_WINDOW_S:g}] s (from {META_MIN_SAMPLES} to a minute)"
        )
    if not MIN_HOP_S <= hop_s <= window_s:
        raise ValueError(f"{META_HOP_S} {hop_s} s is not in [{MIN_HOP_S:g} s, the window]")
    if not isinstance(card, dict):
        raise ValueError("model card is not a JSON object")
    categories = parse_categories(meta.get(META_CATEGORIES))
    return ModelInfo(
        sample_rate=rate,
        labels=labels,
        window_s=window_s,
        hop_s=hop_s,
        model_version=meta[META_MODEL_VERSION],
        teacher=meta[META_TEACHER],
        card=card,
        min_samples=min_samples,
        categories=categories,
    )


def parse_categories(text: str | None) -> tuple[str, ...]:
    """The category labels ``edgeser.categories`` declares (None: no head, ``()``); ValueError
    unless it is a JSON list of at least two unique, non-empty names none of RESERVED_NAMES."""
    if text is None:
        return ()
    try:
        labels = json.loads(text)
    except ValueError:
        raise ValueError(f"{META_CATEGORIES} is not JSON: {text!r}") from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{META_CATEGORIES} is not a JSON list of names: {text!r}")
    if len(labels) < 2:
        raise ValueError(f"{META_CATEGORIES} names {len(labels)} categories, not at least 2")
    if any(not x.strip() for x in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"{META_CATEGORIES} names are not unique and non-empty: {labels}")
    reserved = [x for x in labels if x in RESERVED_NAMES]
    if reserved:
        raise ValueError(f"{META_CATEGORIES} takes the reserved column name(s) {reserved}")
    return tuple(labels)


def check_categories_output(
    categories: tuple[str, ...], output: tuple[str, list[Any]] | None
) -> None:
    """Check a graph's ``categories`` output (its type and shape as onnxruntime spells them,
    None: no such output) against the declared labels: present iff declared, float32
    [batch, K] with K the number of labels (a named K is checked on the first run).
    ValueError naming what is wrong."""
    if output is None:
        if categories:
            raise ValueError(
                f"{META_CATEGORIES} names {len(categories)} categories but there is no "
                f"output {OUTPUT_CATEGORIES!r}"
            )
        return
    if not categories:
        raise ValueError(f"output {OUTPUT_CATEGORIES!r} has no labels ({META_CATEGORIES})")
    kind, shape = output
    if kind != FLOAT32_TYPE or len(shape) != 2:
        raise ValueError(
            f"output {OUTPUT_CATEGORIES!r} is {kind} {list(shape)}, not float32 [batch, K]"
        )
    if isinstance(shape[1], int) and shape[1] != len(categories):
        raise ValueError(
            f"output {OUTPUT_CATEGORIES!r} has {shape[1]} values but {META_CATEGORIES} "
            f"names {len(categories)}"
        )


def check_float32_outputs(outputs: Iterable[Any], names: Iterable[str]) -> None:
    """ValueError naming the first of ``names`` among the graph's ``outputs`` (objects with
    ``name`` and ``type``, as sessions list them) that is not float32: an int64 ``adv`` would
    otherwise read 0.0 forever."""
    types = {o.name: o.type for o in outputs}
    for name in names:
        if name in types and types[name] != FLOAT32_TYPE:
            raise ValueError(f"output {name!r} is {types[name]}; the contract wants float32")
