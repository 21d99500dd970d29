"""``edgeser-export``: student checkpoint -> ONNX (and int8) files the runtime loads."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgeser.channels import run_command
from edgeser.cli_args import OneLineParser, nonempty_path, number, require_extra
from edgeser.errors import EdgeserError

from .config import ExportConfig

if TYPE_CHECKING:
    from .pipeline import ExportedFile

PROG = "edgeser-export"
# What the export imports: a runtime-only install has the command but not these.
EXTRA_MODULES = ("torch", "onnx", "onnxscript", "onnx_ir", "tqdm")


def build_parser() -> argparse.ArgumentParser:
    """Flags mirror ``ExportConfig``; only flags given on the command line override the TOML."""
    p = OneLineParser(
        prog=PROG,
        description="Export a Wav2Small student checkpoint to ONNX (and int8), checking parity.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "checkpoint",
        nargs="?",
        metavar="PATH",
        type=nonempty_path,
        help="student checkpoint (.pt), a folder in the published Wav2Small layout "
        "(model.safetensors + config.json), or a hub id such as audeering/wav2small",
    )
    p.add_argument("--out", metavar="DIR", type=nonempty_path,
                   help="output folder (must not exist unless --force; "
                   "default: runs/export/NAME)")  # fmt: skip
    p.add_argument("--config", metavar="TOML", type=nonempty_path,
                   help="settings file (flags override it)")  # fmt: skip
    p.add_argument("--name", help="file stem of the outputs (default: the checkpoint's stem)")
    p.add_argument("--int8", action="store_true", help="also write a static int8 QDQ model")
    p.add_argument(
        "--calibration",
        nargs="+",
        metavar="DATA",
        type=nonempty_path,
        help="audio folders, files or manifest CSVs for int8 calibration",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="full fp32 parity sweep (0.25-30 s, batch 1 and 8) and latency per window",
    )
    p.add_argument("--force", action="store_true", help="write into an existing output folder")
    p.add_argument(
        "--min-ccc", type=number(), dest="min_ccc", help="refuse int8 below this CCC (default 0.99)"
    )
    p.add_argument(
        "--min-category-agreement",
        type=number(),
        dest="min_category_agreement",
        help="refuse int8 whose top category matches fp32 on fewer held-out crops (default 0.98)",
    )
    p.add_argument(
        "--max-category-diff",
        type=number(),
        dest="max_category_diff",
        help="refuse int8 whose category probabilities differ more from fp32's (default 0.03)",
    )
    p.add_argument("--window", type=number(), dest="window_s", help="recommended window, s")
    p.add_argument("--hop", type=number(), dest="hop_s", help="recommended hop, s")
    p.add_argument("--model-version", dest="model_version", help="version string in metadata")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export; a clear one-line error and exit code 2 for anything refused."""
    return run_command(PROG, lambda: _run(argv))


def _run(argv: Sequence[str] | None) -> int:
    """The command line within its output channels (``edgeser.channels``)."""
    require_extra(PROG, "export", EXTRA_MODULES)
    from .pipeline import run_export

    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config", None)
    try:
        config = (
            ExportConfig.from_toml(config_file, **args)
            if config_file
            else ExportConfig.from_dict(args)
        )
        files = run_export(config, log=lambda message: print(message, file=sys.stderr))
    except EdgeserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(files))
    return 0


def format_table(files: Sequence[ExportedFile]) -> str:
    """Plain-text table: file, size and the parity figures (and latency when measured)."""
    rows = [("file", "size", "parity", "ms per window (1 thread)")]
    for f in files:
        latency = "" if f.latency_ms is None else f"{f.latency_ms:.2f}"
        rows.append((f.path.name, f"{f.size_bytes / 1000:.1f} kB", _parity(f.parity), latency))
        rows.append((f.card_path.name, f"{f.card_path.stat().st_size / 1000:.1f} kB", "", ""))
    if all(f.latency_ms is None for f in files):
        rows = [r[:3] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _parity(parity: dict) -> str:
    """One-line summary of a file's parity figures."""
    if "ccc_vs_fp32" in parity:
        scores = " ".join(f"{k[0].upper()} {v:.4f}" for k, v in parity["ccc_vs_fp32"].items())
        top = parity.get("categories", {}).get("top_class_agreement_vs_fp32")
        heads = "" if top is None else f", top category agrees {top:.1%}"
        return f"CCC vs fp32: {scores}{heads} ({parity['heldout_crops']} held-out crops)"
    return (
        f"max |onnx - torch| {parity['max_abs_diff_vs_torch']:.1e} "
        f"({len(parity['lengths_samples'])} lengths x batch "
        f"{'/'.join(map(str, parity['batch_sizes']))})"
    )


if __name__ == "__main__":
    sys.exit(main())
