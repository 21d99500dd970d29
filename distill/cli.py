"""``edgeser-distill``: label, train, eval, or run all three from one TOML config; check a store.

Every option of a stage is a field of its config dataclass and a command-line flag (generated
from the dataclass, so the two cannot drift apart); flags override ``--config`` values.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence
from typing import Any

from edgeser.channels import run_command
from edgeser.cli_args import OneLineParser, nonempty_path, number, require_extra, whole_number
from edgeser.errors import EdgeserError

from .config import EvalConfig, LabelConfig, RunConfig, TrainConfig, load_run_config

PROG = "edgeser-distill"
# What the stages import: a runtime-only install has the command but not these.
EXTRA_MODULES = ("torch", "transformers", "safetensors", "onnx", "tqdm", "yaml")
STAGES: dict[str, type] = {"label": LabelConfig, "train": TrainConfig, "eval": EvalConfig}


def add_config_flags(parser: argparse.ArgumentParser, cls: type, section: str, prefix: str = ""):
    """One flag per dataclass field (nested dataclasses get a ``--<name>-`` prefix), its help
    generated from the field's sentence, unit and default (``config.option``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        dest = prefix + f.name
        flag = "--" + dest.replace(".", "-").replace("_", "-")
        help_text = flag_help(f, section, dest)
        if dataclasses.is_dataclass(hint):
            add_config_flags(parser, hint, section, dest + ".")
        elif hint is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)  # fmt: skip
        elif _has_list_member(hint):  # str | list[str]: one teacher, or repeat the flag
            parser.add_argument(flag, dest=dest, action="append", default=argparse.SUPPRESS,
                                help=help_text + "; repeat the flag for several")  # fmt: skip
        elif _list_of_tables(hint):  # e.g. [[label.calibration]]: one flag per table
            parser.add_argument(flag, dest=dest, type=typing.get_args(hint)[0].parse,
                                action="append", default=argparse.SUPPRESS,
                                help=help_text + "; repeat the flag for several")  # fmt: skip
        elif typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            pair = item is float or f.name.endswith("_range")  # [low, high]
            nargs, metavar = (2, ("LOW", "HIGH")) if pair else ("+", f.name.upper())
            parser.add_argument(flag, dest=dest, type=FLAG_TYPES.get(item, item), nargs=nargs,
                                metavar=metavar, default=argparse.SUPPRESS,
                                help=help_text)  # fmt: skip
        else:
            parser.add_argument(flag, dest=dest, type=FLAG_TYPES.get(hint, hint),
                                metavar=f.name.upper(), default=argparse.SUPPRESS,
                                help=help_text)  # fmt: skip


# Number flags parse with errors in words ("expected a whole number, got 'x'").
FLAG_TYPES: dict[type, Any] = {int: whole_number(), float: number()}


def flag_help(f: dataclasses.Field, section: str, dest: str) -> str:
    """``sentence, unit; default D (TOML: [section] key)`` from a config field."""
    text = f.metadata.get("help", "")
    if f.metadata.get("unit"):
        text += f", {f.metadata['unit']}"
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(default, bool):
        text += f"; default {str(default).lower()}"
    elif isinstance(default, list) and default:
        text += f"; default {' '.join(map(str, default))}"
    elif default not in ("", [], dataclasses.MISSING) and not dataclasses.is_dataclass(default):
        text += f"; default {default}"
    return f"{text} (TOML: [{section}] {dest})".lstrip("; ")


def _has_list_member(hint: Any) -> bool:
    """A union hint with a ``list[...]`` among its members."""
    return any(typing.get_origin(a) is list for a in typing.get_args(hint))


def _list_of_tables(hint: Any) -> bool:
    """``list[SomeDataclass]``."""
    return typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0])


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Set dotted ``overrides`` (``augment.p_noise``) on a config object."""
    for dest, value in overrides.items():
        target = cfg
        *parents, name = dest.split(".")
        for p in parents:
            target = getattr(target, p)
        setattr(target, name, value)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Distil a speech emotion teacher into a Wav2Small student.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "label": "run the teacher over crops of the data and store its pseudo-labels",
        "train": "train a student on a label store",
        "eval": "CCC of a student vs its teacher (and human labels) on held-out crops",
    }
    for name, cls in STAGES.items():
        p = sub.add_parser(name, help=helps[name], description=helps[name])
        p.add_argument("--config", type=nonempty_path,
                       help="TOML file; its [label]/[train]/[eval] tables are read")  # fmt: skip
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        add_config_flags(p, cls, name)
    run = sub.add_parser("run", help="label, train and eval from one TOML config")
    run.add_argument("config", type=nonempty_path,
                     help="TOML file with [label], [train] and [eval] tables")  # fmt: skip
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    about = "report a label store's health (chunks, crops, damaged, orphans); changes nothing"
    check = sub.add_parser("check", help=about, description=about + "; exit status 1 when a "
                           "chunk is damaged (`label --repair` moves it aside)")  # fmt: skip
    check.add_argument("--store", required=True, type=nonempty_path,
                       help="The label store folder to check.")  # fmt: skip
    return parser


def stage_config(args: argparse.Namespace) -> Any:
    """The stage's config: the file's table (if any) with the flags applied on top."""
    run = load_run_config(args.config) if args.config else RunConfig()
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "quiet")}
    return apply_overrides(getattr(run, args.command), overrides)


def run_stage(command: str, cfg: Any, progress: bool) -> None:
    """Run one stage and print its outcome."""
    from .evaluate import run_eval
    from .label import run_label
    from .train import run_train

    if command == "label":  # on Ray when cfg.ray is set (run_label dispatches)
        print(run_label(cfg, progress).summary())
    elif command == "train":
        report = run_train(cfg, progress)
        print(f"student: {report.checkpoint} ({report.steps} steps, "
              f"{report.crops_per_s:.0f} crops/s); dev CCC {report.dev_ccc}")  # fmt: skip
    else:
        print(run_eval(cfg, progress=False).table())


def check_store(root: str) -> int:
    """Print the health of the store at ``root``; 1 when a chunk is damaged, else 0."""
    from .store import LabelStore

    health = LabelStore.open(root).health()
    print(health.summary())
    return 1 if health.damaged else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line and exit code 2."""
    return run_command(PROG, lambda: _run(argv))


def _run(argv: Sequence[str] | None) -> int:
    """The command line within its output channels (``edgeser.channels``)."""
    require_extra(PROG, "distill", EXTRA_MODULES)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return check_store(args.store)
        if args.command == "run":
            run = load_run_config(args.config)
            for stage in STAGES:
                run_stage(stage, getattr(run, stage), not args.quiet)
        else:
            run_stage(args.command, stage_config(args), not args.quiet)
    except (EdgeserError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
