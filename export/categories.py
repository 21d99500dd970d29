"""The optional categorical output of an exported model: its name, its metadata, its int8 gate.

A student with a categorical head exports a third output ``categories`` [batch, K] (softmax
probabilities, rows sum to 1) and declares its label names, in column order, as a JSON list
under the metadata key ``edgeser.categories``; the streaming graph carries both too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edgeser.contract import INPUT_NAME, META_CATEGORIES, OUTPUT_CATEGORIES


def category_metadata(labels: Sequence[str]) -> dict[str, str]:
    """The metadata entry that names a model's category labels ({} without a head)."""
    return {META_CATEGORIES: json.dumps(list(labels))} if labels else {}


def output_per_clip(
    sess: ort.InferenceSession, clips: Sequence[np.ndarray], output: str
) -> np.ndarray:
    """[clips, n] of the graph output ``output``, one clip per run (clips may differ in length)."""
    return np.concatenate([sess.run([output], {INPUT_NAME: c[None, :]})[0] for c in clips])


@dataclass(frozen=True)
class CategoryParity:
    """How closely int8 category probabilities follow fp32 ones on held-out audio."""

    top_class_agreement: float  # share of clips whose most probable label is fp32's
    max_abs_diff: float  # largest |int8 - fp32| probability over all clips and labels


def category_parity(
    fp32: ort.InferenceSession, int8: ort.InferenceSession, clips: Sequence[np.ndarray]
) -> CategoryParity:
    """Top-class agreement and largest probability difference of int8 against fp32."""
    reference = output_per_clip(fp32, clips, OUTPUT_CATEGORIES)
    probs = output_per_clip(int8, clips, OUTPUT_CATEGORIES)
    return CategoryParity(
        top_class_agreement=float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean()),
        max_abs_diff=float(np.abs(probs - reference).max()),
    )
