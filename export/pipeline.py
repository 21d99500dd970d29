"""One export run: checkpoint -> checked fp32 (and int8) ONNX files with model cards.

Everything is built and checked in a staging folder first; the output folder only receives
files when every check passed, so a refused export writes nothing.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
from torch import nn

import edgeser
from edgeser.contract import LABELS, SAMPLE_RATE, ModelInfo
from edgeser.errors import ModelError
from edgeser.incremental import STREAM_SUFFIX

from .card import checkpoint_card, sha256_file, write_card
from .categories import CategoryParity, category_metadata, category_parity
from .config import ExportConfig, ExportError
from .import_published import IMPORT_MAX_DIFF, SCALED_MEASURE, load_source
from .onnx_export import export_onnx, set_metadata
from .parity import (
    BATCH_SIZES,
    FULL_LENGTHS,
    QUICK_LENGTHS,
    ParityError,
    fp32_max_abs_diff,
    int8_parity,
    session,
    window_latency_ms,
)
from .quantize import (
    QUANTIZATION_SETTINGS,
    CalibrationAudio,
    load_calibration_audio,
    quantize_int8,
)
from .streaming import export_streaming

EXPORTER = "torch.onnx.export (TorchScript, eval mode, constant folding) + onnx_ir clean-up"


@dataclass(frozen=True)
class ExportedFile:
    """One written model file, its card, and the figures that vouch for it."""

    path: Path
    card_path: Path
    size_bytes: int
    parity: dict[str, Any]
    latency_ms: float | None = None


def _silent(_: str) -> None:
    """Default progress sink."""


def run_export(config: ExportConfig, log: Callable[[str], None] = _silent) -> list[ExportedFile]:
    """Export, check and write the files ``config`` asks for; ExportError (nothing written)
    when the checkpoint, calibration audio or output folder is unusable or a check fails."""
    _check_output_folder(config)
    source = load_source(config.checkpoint)
    model, meta = source.model, source.meta
    imported = source.imported is not None
    limit = min(config.max_abs_diff, IMPORT_MAX_DIFF) if imported else config.max_abs_diff
    audio = None
    if config.int8:
        log(f"reading calibration audio from {', '.join(map(str, config.calibration))}")
        audio = load_calibration_audio(
            config.calibration,
            calibration_crops=config.calibration_crops,
            heldout_crops=config.heldout_crops,
            crop_s=config.crop_s,
            seed=config.seed,
        )
    log(f"exporting {config.checkpoint} to ONNX (opset {config.opset})")
    fp32 = export_onnx(model, config.opset)
    fp32_session = session(fp32)
    lengths = FULL_LENGTHS if config.check else QUICK_LENGTHS
    log(f"fp32 parity against torch: lengths {[n / SAMPLE_RATE for n in lengths]} s")
    diff = fp32_max_abs_diff(model, fp32_session, lengths, BATCH_SIZES, scaled=imported)
    if diff > limit:
        raise ParityError(f"fp32 ONNX differs from torch by up to {diff:.2e} (limit {limit:.0e})")
    sha = sha256_file(source.weights)
    version = config.model_version or str(meta.get("model_version") or "")
    base = checkpoint_card(
        model, meta, source.weights, sha, version or f"{config.checkpoint.stem}-{sha[:12]}"
    )
    if imported:
        base["imported"] = source.imported
    settings = {
        "exporter": EXPORTER,
        "opset": config.opset,
        "window_s": config.window_s,
        "hop_s": config.hop_s,
    }
    fp32_parity = {
        "max_abs_diff_vs_torch": diff,
        "measure": SCALED_MEASURE if imported else "absolute",
        "limit": limit,
        "lengths_samples": list(lengths),
        "batch_sizes": list(BATCH_SIZES),
    }
    files = [(fp32, _card(base, f"{config.stem}.onnx", "fp32", settings, fp32_parity))]
    if audio is not None:
        log(f"quantising to int8 on {len(audio.calibration)} crops from {audio.files} files")
        int8, quantization, int8_parity = _checked_int8(fp32, fp32_session, audio, config, model)
        int8_settings = {**settings, "quantization": quantization}
        name = f"{config.stem}.int8.onnx"
        files.append((int8, _card(base, name, "int8", int8_settings, int8_parity)))
    with tempfile.TemporaryDirectory(prefix="edgeser-export-") as tmp:
        staged = [_stage(Path(tmp), proto, card, config, model) for proto, card in files]
        if config.check:
            log(f"latency per {config.window_s} s window, 1 thread")
            staged = [_with_latency(f, config.window_s) for f in staged]
        return _publish(staged, config.out)


def _checked_int8(
    fp32: onnx.ModelProto,
    fp32_session: ort.InferenceSession,
    audio: CalibrationAudio,
    config: ExportConfig,
    student: nn.Module,
) -> tuple[onnx.ModelProto, dict[str, Any], dict[str, Any]]:
    """The int8 graph, its quantisation settings and parity figures; ParityError when its
    CCC against fp32 on the held-out crops is below ``config.min_ccc``, or when a categorical
    head's probabilities fail ``_check_categories``."""
    int8 = quantize_int8(fp32, audio.calibration)
    int8_session = session(int8)
    agreement = int8_parity(fp32_session, int8_session, audio.heldout)
    if min(agreement.ccc.values()) < config.min_ccc:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in agreement.ccc.items())
        spread = ", ".join(f"{k} {v:.3f}" for k, v in agreement.fp32_std.items())
        raise ParityError(
            f"int8 CCC against fp32 on {len(audio.heldout)} held-out crops is {figures}: "
            f"below the minimum {config.min_ccc} (set --min-ccc to accept less). The largest "
            f"int8 - fp32 difference is {agreement.max_abs_diff:.3f}; the fp32 readings vary "
            f"with std {spread} (CCC is relative to that spread)."
        )
    quantization = {
        **QUANTIZATION_SETTINGS,
        "calibration_crops": len(audio.calibration),
        "calibration_files": audio.files,
        "files_skipped": audio.skipped,  # unreadable or too short
        "crop_s": config.crop_s,
    }
    parity = {
        "ccc_vs_fp32": agreement.ccc,
        "max_abs_diff_vs_fp32": agreement.max_abs_diff,
        "fp32_std": agreement.fp32_std,
        "min_ccc": config.min_ccc,
        "heldout_crops": len(audio.heldout),
    }
    if student.config.categories:
        heads = category_parity(fp32_session, int8_session, audio.heldout)
        _check_categories(heads, len(audio.heldout), config)
        parity["categories"] = {
            "top_class_agreement_vs_fp32": heads.top_class_agreement,
            "max_abs_diff_vs_fp32": heads.max_abs_diff,
            "min_top_class_agreement": config.min_category_agreement,
            "max_abs_diff_limit": config.max_category_diff,
            "measure": "max |int8 - fp32| probability over every held-out crop and label",
        }
    return int8, quantization, parity


def _check_categories(heads: CategoryParity, crops: int, config: ExportConfig) -> None:
    """ParityError unless the int8 top category agrees with fp32's on at least
    ``min_category_agreement`` of the held-out crops and no probability strays further than
    ``max_category_diff``."""
    if (
        heads.top_class_agreement < config.min_category_agreement
        or heads.max_abs_diff > config.max_category_diff
    ):
        raise ParityError(
            f"int8 categories against fp32 on {crops} held-out crops: the top category agrees "
            f"on {heads.top_class_agreement:.1%} (minimum {config.min_category_agreement:.1%}), "
            f"probabilities differ by up to {heads.max_abs_diff:.3f} (limit "
            f"{config.max_category_diff}); set --min-category-agreement / --max-category-diff "
            "to accept less"
        )


def _card(
    base: dict[str, Any], file: str, precision: str, export: dict[str, Any], parity: dict
) -> dict[str, Any]:
    """The model card of one file: the checkpoint's part plus this file's export and parity."""
    return {**base, "file": file, "precision": precision, "export": export, "parity": parity}


def _check_output_folder(config: ExportConfig) -> None:
    """Refuse an existing output folder unless ``force``; never a plain file."""
    if config.out.exists() and not config.out.is_dir():
        raise ExportError(f"output {config.out} exists and is not a folder")
    if config.out.exists() and not config.force:
        raise ExportError(f"output folder {config.out} exists; pass --force to write into it")


def _stage(
    folder: Path,
    proto: onnx.ModelProto,
    card: dict[str, Any],
    config: ExportConfig,
    student: nn.Module,
) -> ExportedFile:
    """Write one model with its metadata and card JSON (and, for a streamable student, its
    ``.stream.onnx`` graph), then load it through the runtime."""
    path = folder / card["file"]
    info = ModelInfo(
        sample_rate=SAMPLE_RATE,
        labels=LABELS,
        window_s=config.window_s,
        hop_s=config.hop_s,
        model_version=card["model_version"],
        teacher=card["teacher"],
        card=card,
    )
    set_metadata(proto, {**info.to_metadata(), **category_metadata(student.config.categories)})
    proto.producer_name = "edgeser.export"
    proto.producer_version = edgeser.__version__
    onnx.save(proto, path)
    if student.config.normalization == "frame":
        export_streaming(student, info, path)
    card_path = path.with_suffix(".json")
    write_card(card, card_path)
    try:
        edgeser.load(path)
    except ModelError as exc:
        raise ExportError(f"the runtime refuses the exported file: {exc}") from None
    return ExportedFile(path, card_path, path.stat().st_size, card["parity"])


def _with_latency(exported: ExportedFile, window_s: float) -> ExportedFile:
    """The same record with the median one-thread latency per window filled in."""
    latency = window_latency_ms(session(exported.path), window_s)
    return dataclasses.replace(exported, latency_ms=latency)


def _publish(staged: list[ExportedFile], out: Path) -> list[ExportedFile]:
    """Move staged files into ``out`` (created if missing); the records of the moved files."""
    out.mkdir(parents=True, exist_ok=True)
    published = []
    for f in staged:
        path = Path(shutil.move(f.path, out / f.path.name))
        card_path = Path(shutil.move(f.card_path, out / f.card_path.name))
        stream = f.path.with_suffix(STREAM_SUFFIX)
        if stream.is_file():
            shutil.move(stream, out / stream.name)
        published.append(dataclasses.replace(f, path=path, card_path=card_path))
    return published
