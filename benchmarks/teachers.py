"""The teachers under test, built for timing: speed depends on architecture, not weights.

``wav2vec2_teacher`` builds the audeering wav2vec2 A/D/V model's exact architecture
(``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim``: 12 layers of 1024, stable layer
norm, regression head) with random weights, wrapped in the same ``Wav2Vec2Teacher`` that
labels with the real checkpoint. ``reference_teacher`` is the project's own teacher.
"""

from __future__ import annotations

from pathlib import Path

import torch
from edgeser.distill.teachers.base import Teacher

# The published checkpoint's config facts (issue 4); everything else is transformers' default.
AUDEERING_CONFIG = dict(
    architectures=["Wav2Vec2ForSpeechClassification"],
    num_hidden_layers=12,
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    conv_bias=True,
    final_dropout=0.1,
    pooling_mode="mean",
    problem_type="regression",
    id2label={0: "arousal", 1: "dominance", 2: "valence"},
    label2id={"arousal": 0, "dominance": 1, "valence": 2},
)
# --quick: the same layout shrunk to a few thousand parameters, to exercise the code path.
QUICK_OVERRIDES = dict(
    num_hidden_layers=2,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=2,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def wav2vec2_teacher(quick: bool = False) -> tuple[Teacher, int]:
    """The audeering architecture with random weights on CPU, and its parameter count."""
    from edgeser.distill.teachers.wav2vec2 import (
        Wav2Vec2ForSpeechClassification,
        Wav2Vec2Teacher,
    )
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config(**{**AUDEERING_CONFIG, **(QUICK_OVERRIDES if quick else {})})
    torch.manual_seed(0)
    model = Wav2Vec2ForSpeechClassification(config).requires_grad_(False)
    return Wav2Vec2Teacher(model, device="cpu"), _count(model)


def reference_teacher(checkpoint: Path | None) -> tuple[Teacher, int, str]:
    """The reference teacher from ``checkpoint`` when it exists, else its architecture with
    random weights; with its parameter count and where the weights came from."""
    from edgeser.distill.teachers.reference import (
        ReferenceModel,
        ReferenceTeacher,
        load_reference_teacher,
    )

    if checkpoint is not None and checkpoint.is_file():
        teacher = load_reference_teacher(checkpoint)
        teacher.model.requires_grad_(False)
        return teacher, _count(teacher.model), f"trained weights ({checkpoint.name})"
    torch.manual_seed(0)
    model = ReferenceModel().requires_grad_(False)
    return ReferenceTeacher(model, "reference:random"), _count(model), "random weights"


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # frozen for inference: count them all
