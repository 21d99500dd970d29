"""The ``edgeser`` command: score files, stream live audio, list devices, describe a model.

Exit codes: 0 success; 1 some files could not be scored (each reported on stderr, the others
scored); 2 an error that stops the command (bad model, device, flag or config), on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__, limits, plot
from .audio import find_audio_files
from .channels import run_command
from .cli_args import (
    OneLineFormatter,
    OneLineParser,
    nonempty_path,
    number,
    require_extra,
    whole_number,
)
from .config import SCORE_FORMATS, STREAM_FORMATS, RuntimeConfig
from .contract import CONTRACT_VERSION, SAMPLE_RATE
from .display import CsvRows, JsonLines, JsonRows, LiveBars, RowWriter, TableRows
from .errors import AudioError, AudioFileError, ConfigError, EdgeserError
from .interrupts import Interrupted, interrupted_by_signals
from .model import Model, load
from .sources import DeviceSource, FileSource, input_devices
from .stream import Stream

PROG = "edgeser"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    for out in (sys.stdout, sys.stderr):  # print file names byte for byte, in any locale
        with contextlib.suppress(AttributeError, ValueError):
            out.reconfigure(errors="surrogateescape")
    args = _parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    return run_command(PROG, lambda: _run(args, verbose), quiet_native=not verbose)


def _run(args: argparse.Namespace, verbose: bool) -> int:
    """Run the parsed command: its errors one line, Ctrl-C and SIGTERM with their status."""
    with _messages_on_stderr(verbose):
        try:
            with interrupted_by_signals():
                return args.command(args)
        except EdgeserError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        except Interrupted as stop:  # Ctrl-C or SIGTERM: what was written stays, whole rows
            print(f"{PROG}: interrupted ({stop.name})", file=sys.stderr)
            return stop.status


def score(args: argparse.Namespace) -> int:
    """Score files and folders; one row per file (or per window) on stdout, and with
    ``--plot`` a picture of each file's readings (``edgeser.plot``)."""
    if args.plot is not None:
        require_extra(PROG, plot.EXTRA, plot.MODULES)
    config = _config(args)
    model = load(config.model, threads=config.threads)
    window, hop = model.window_hop(config.window_s, config.hop_s)
    vad = config.voice_gate()
    if config.categories and not model.categories:
        raise ConfigError(f"--categories: {model.path} has no categorical head")
    failed = 0

    def report(error: AudioFileError) -> None:
        nonlocal failed
        print(f"{PROG}: {error}", file=sys.stderr)
        failed += 1

    files = find_audio_files(args.paths, on_error=report)
    if not files:
        raise AudioFileError(f"no audio files found in {', '.join(args.paths)}")
    categories = model.categories if config.categories else ()
    images = _plot_paths(args.plot, args.paths, files)
    writer = _row_writer(config.score_format, [str(f) for f in files], model, categories)
    for index, path in enumerate(files):
        try:
            result = model.score_file(path, window, hop, vad)
        except AudioFileError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not result.aggregate.voiced:
            print(f"{PROG}: {path}: no speech found (values left empty)", file=sys.stderr)
        for reading in result.windows if config.per_window else [result.aggregate]:
            writer.write(str(path), reading)
        sys.stdout.flush()
        try:
            if images:
                plot.write_plot(result, images[index])
        except OSError as exc:
            print(f"{PROG}: {images[index]}: cannot write the plot ({exc})", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def stream(args: argparse.Namespace) -> int:
    """Stream readings from a device or a file until it ends, --duration, or Ctrl-C."""
    if args.realtime and not args.from_file:
        raise ConfigError("--realtime paces --from-file; give a file with it")
    if args.from_file and args.device is not None:
        raise ConfigError("give --device or --from-file, not both")
    if args.from_file and args.reconnect:
        raise ConfigError("--reconnect is for a device; a file does not come back")
    config = _config(args)
    model = load(config.model, threads=config.threads)
    if args.from_file:
        try:
            source = FileSource(args.from_file, realtime=args.realtime, block_s=config.block_s)
        except AudioFileError as exc:  # unreadable: exit 1, as `score` of the same file
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
    else:
        source = DeviceSource(config.device, block_s=config.block_s, reconnect=config.reconnect)
    live = Stream(
        model,
        source,
        window=config.window_s,
        hop=config.hop_s,
        vad=config.voice_gate(),
        smoothing=config.smoothing,
        max_pending=config.max_pending,
    )
    fmt = config.stream_format
    if fmt == "auto":
        fmt = "bars" if sys.stdout.isatty() else "jsonl"
    has_head = bool(model.categories)
    display = LiveBars(sys.stdout) if fmt == "bars" else JsonLines(sys.stdout, has_head)
    failed = None
    try:
        with live:
            for reading in live:
                display.show(reading)
                if config.duration_s is not None and reading.end_s >= config.duration_s:
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM) is how a live stream ends
    except AudioError as exc:  # the audio could not be scored: as in `score`, exit 1
        failed = exc if isinstance(exc, AudioFileError) else f"{args.from_file or 'input'}: {exc}"
    finally:  # also when the device is lost: the summary, then the error (exit 2)
        display.close()
        print(f"{PROG}: stream stopped: {live.stats.summary()}", file=sys.stderr)
    if failed is not None:
        print(f"{PROG}: {failed}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _messages_on_stderr(verbose: bool) -> Iterator[None]:
    """Log records as ``edgeser: message`` lines on (the current) stderr while a command runs:
    warnings and errors, without tracebacks; with ``-v`` also debug lines and tracebacks."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(f"{PROG}: %(message)s", verbose=verbose))
    if not verbose:  # the stream re-raises its errors to the command, which prints them once
        handler.addFilter(lambda record: not _reraised_by_stream(record))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _reraised_by_stream(record: logging.LogRecord) -> bool:
    """An error the Stream logs and then raises from its iterator (a broken source, a model
    failing mid-stream): the command reports it itself."""
    return record.name == "edgeser.stream" and record.levelno >= logging.ERROR


def devices(args: argparse.Namespace) -> int:
    """List the input devices PortAudio sees (* marks the default)."""
    found = input_devices()
    if not found:
        print(f"{PROG}: no audio input devices found", file=sys.stderr)
    for d in found:
        mark = "*" if d["is_default"] else " "
        print(
            f"{mark} {d['index']:>3}  {d['name']}  ({d['hostapi']}, "
            f"{d['channels']} ch, {d['default_rate']} Hz)"
        )
    return 0


def info(args: argparse.Namespace) -> int:
    """Print a model's contract metadata, signature and model card."""
    model = load(args.model)
    print(_describe(model))
    return 0


def _describe(model: Model) -> str:
    """The text of ``edgeser info``."""
    i = model.info
    size_kb = model.path.stat().st_size / 1024
    lines = [
        f"model:         {model.path} ({size_kb:.1f} KB)",
        f"version:       {i.model_version}",
        f"teacher:       {i.teacher}",
        f"contract:      v{CONTRACT_VERSION}: mono float32 at {SAMPLE_RATE} Hz in, "
        f"{', '.join(i.labels)} out",
        f"window / hop:  {i.window_s:g} s / {i.hop_s:g} s (minimum input {i.min_samples} samples)",
        f"audio:         {SAMPLE_RATE // 1000} kHz wide-band speech; other rates are resampled, "
        "but 8 kHz (telephone) audio lacks everything above 4 kHz and shifts readings "
        "(bundled model: arousal and dominance a little lower; see docs/models.md, 8 kHz audio)",
        f"embedding:     {model.embedding_size or 'none'}",
        f"categories:    {', '.join(model.categories) or 'none (no categorical head)'}",
        *(f"  {name}: {sig}" for name, sig in model.signature.items()),
        "model card:",
        json.dumps(i.card, indent=2, sort_keys=True),
    ]
    return "\n".join(lines)


def _config(args: argparse.Namespace) -> RuntimeConfig:
    """Settings from --config (if given), overridden by the flags that were given."""
    config = RuntimeConfig.from_toml(args.config) if args.config else RuntimeConfig()
    fmt = "score_format" if args.command is score else "stream_format"
    flags = {
        fmt: getattr(args, "format", None),
        "per_window": getattr(args, "per_window", None),
        "categories": getattr(args, "categories", None),
        "duration_s": getattr(args, "duration", None),
        "model": args.model,
        "threads": args.threads,
        "window_s": args.window,
        "hop_s": args.hop,
        "vad": False if args.no_vad else None,
        "vad_threshold_db": args.vad_threshold,
        "smoothing": getattr(args, "smoothing", None),
        "device": getattr(args, "device", None),
        "reconnect": getattr(args, "reconnect", False) or None,
    }
    return config.updated(flags, source="command line")


def _plot_paths(out: str | None, paths: list[str], files: list[Path]) -> list[Path]:
    """The picture of each file for ``--plot OUT`` (none without it): OUT itself for one file,
    else one per file in the folder OUT, made if need be (ConfigError if it cannot be)."""
    if out is None:
        return []
    several = len(paths) > 1 or any(Path(p).is_dir() for p in paths)
    images = plot.image_paths(out, files, folder=several)
    if several or len(images) > 1 or Path(out).is_dir():
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--plot {out}: cannot make the folder ({exc.strerror})") from None
    return images


def _row_writer(fmt: str, files: list[str], model: Model, categories: tuple[str, ...]) -> RowWriter:
    """The writer of ``score --format``: csv and table rows with the ``categories`` columns
    asked for; JSON lines with emotion and categories whenever the model has them."""
    if fmt == "csv":
        return CsvRows(sys.stdout, categories)
    if fmt == "jsonl":
        return JsonRows(sys.stdout, bool(model.categories))
    return TableRows(sys.stdout, files, categories)


def _parser() -> argparse.ArgumentParser:
    """The argument parser of all sub-commands."""
    parser = OneLineParser(
        prog=PROG, description="Arousal, dominance and valence from a voice, on device."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    verbosity = OneLineParser(add_help=False)
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="also debug lines, tracebacks, native output"
    )
    common = OneLineParser(add_help=False, parents=[verbosity])
    common.add_argument("--model", type=nonempty_path,
                        help="ONNX model file (default: the bundled model)")  # fmt: skip
    common.add_argument("--config", type=nonempty_path,
                        help="TOML file of settings (flags override it)")  # fmt: skip
    common.add_argument("--threads", type=whole_number(limits.THREADS),
                        help=f"CPU threads, {limits.THREADS} (default 1)")  # fmt: skip
    common.add_argument("--window", type=number(limits.WINDOW_S),
                        help="window, s (default: the model's)")  # fmt: skip
    common.add_argument("--hop", type=number(limits.HOP_S),
                        help="hop, s (default: the model's)")  # fmt: skip
    common.add_argument("--no-vad", action="store_true", help="score windows without speech too")
    common.add_argument("--vad-threshold", type=number(limits.VAD_THRESHOLD_DB),
                        help="fixed speech level, dBFS (default: noise-floor gate)")  # fmt: skip

    p = commands.add_parser("score", parents=[common], help="score audio files and folders")
    p.add_argument("paths", nargs="+", metavar="PATH", type=nonempty_path,
                   help="audio files or folders (walked)")  # fmt: skip
    p.add_argument("--format", choices=SCORE_FORMATS, help="output rows (default csv)")
    p.add_argument("--per-window", action="store_true", default=None,
                   help="one row per window, not per file")  # fmt: skip
    p.add_argument("--categories", action="store_true", default=None,
                   help="csv/table: emotion and category probability columns")  # fmt: skip
    p.add_argument("--plot", metavar="OUT",
                   help="draw A/D/V over time: OUT.png for one file, a folder for several "
                   "(needs the [plot] extra)")  # fmt: skip
    p.set_defaults(command=score)

    p = commands.add_parser("stream", parents=[common], help="live readings from a device")
    p.add_argument("--device", help="input device index or name (see `edgeser devices`)")
    p.add_argument("--from-file", metavar="F", type=nonempty_path,
                   help="stream an audio file instead of a device")  # fmt: skip
    p.add_argument("--realtime", action="store_true", help="play --from-file at real-time pace")
    p.add_argument("--format", choices=STREAM_FORMATS,
                   help="auto (default): bars on a terminal, JSON lines when piped")  # fmt: skip
    p.add_argument("--smoothing", type=number(limits.SMOOTHING), help="EMA factor in (0, 1]")
    p.add_argument("--duration", type=number(limits.DURATION_S),
                   help="stop after this many seconds")  # fmt: skip
    p.add_argument(
        "--reconnect", action="store_true", help="wait for a lost device to come back (not: exit 2)"
    )
    p.set_defaults(command=stream)

    p = commands.add_parser("devices", parents=[verbosity], help="list audio input devices")
    p.set_defaults(command=devices)

    p = commands.add_parser("info", parents=[verbosity], help="print a model's contract and card")
    p.add_argument("model", nargs="?", metavar="MODEL", type=nonempty_path,
                   help="ONNX file (default: bundled)")  # fmt: skip
    p.set_defaults(command=info)
    return parser
