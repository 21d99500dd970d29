"""``python -m benchmarks [--quick] [--threads N] [--config TOML] [--out DIR] [--student ONNX]``:
measure everything and write RESULTS.md, results.json and latency.png (default: into
benchmarks/; with --quick into runs/benchmarks-quick/, never over the committed results).
``python -m benchmarks --pi-report``: time the bundled model here (a Raspberry Pi) and print the
lines to paste into an issue; it needs the runtime only."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

PROG = "python -m benchmarks"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long check run")
    parser.add_argument("--threads", type=int, help="also measure on N threads (1 always)")
    parser.add_argument("--config", type=Path, help="TOML file with a [bench] table")
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default benchmarks/; --quick: runs/benchmarks-quick/)",
    )
    parser.add_argument(
        "--pi-report", action="store_true", help="time the bundled model, print lines to paste"
    )
    parser.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="ONNX",
        help="also time this trained student file (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pi_report:  # on a Pi: no torch, so none of the workstation benchmark is imported
        from .pi_report import format_report, gather

        print(format_report(gather()))
        return 0
    from .config import REPO, RESULTS_DIR, BenchConfig
    from .report import write_all
    from .run import run

    config = BenchConfig.from_toml(args.config) if args.config else BenchConfig()
    if args.quick:
        config = config.quickened()
    if args.threads is not None:
        config = dataclasses.replace(config, threads=args.threads)
    if args.student:
        config = dataclasses.replace(config, students=[*config.students, *args.student])
    if args.out is not None:
        config = dataclasses.replace(config, out_dir=str(args.out.resolve()))
    if config.quick and config.path("out_dir") == REPO / RESULTS_DIR:
        print(f"{PROG}: error: --quick figures are checks, not results: they do not "
              f"overwrite {RESULTS_DIR}/ (choose another --out)", file=sys.stderr)  # fmt: skip
        return 2
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    results = run(config, command)
    for path in write_all(results, config.path("out_dir")):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
