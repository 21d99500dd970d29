"""The ``edgeser`` command: score files, stream live audio, list devices, describe a model.

Exit codes: 0 success; 1 some files could not be scored (each reported on stderr, the others
scored); 2 an error that stops the command (bad model, device, flag or config), on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__, limits, plot
from .audio import find_audio_files
from .cli_args import OneLineParser, number, require_extra, whole_number
from .config import SCORE_FORMATS, STREAM_FORMATS, RuntimeConfig
from .contract import CONTRACT_VERSION, SAMPLE_RATE
from .display import CsvRows, JsonLines, JsonRows, LiveBars, RowWriter, TableRows
from .errors import AudioError, AudioFileError, ConfigError, EdgeserError
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
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    try:
        return args.command(args)
    except EdgeserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgeser ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def score(args: argparse.Namespace) -> int:
    """Score files and folders; one row per file (or per window) on stdout, and with
    ``--plot`` a picture of each file's readings (``edgeser.plot``)."""
    if args.plot is not None:
        require_extra(PROG, plot.EXTRA, plot.MODULES)
    config = _config(args)
    model = load(config.model, threads=config.threads)
    window, hop = model.window_hop(config.window_s, config.hop_s)
    vad = config.voice_gate()
    failed = 0

    def report(error: AudioFileError) -> None:
        nonlocal failed
        print(f"{PROG}: {error}", file=sys.stderr)
        failed += 1

    files = find_audio_files(args.paths, on_error=report)
    if not files:
        raise AudioFileError(f"no audio files found in {', '.join(args.paths)}")
    images = _plot_paths(args.plot, args.paths, files)
    writer = _row_writer(config.score_format, [str(f) for f in files])
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
        source = FileSource(args.from_file, realtime=args.realtime, block_s=config.block_s)
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
    display = LiveBars(sys.stdout) if fmt == "bars" else JsonLines(sys.stdout)
    failed = None
    try:
        with _interrupted_by_signals(), live:
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
def _interrupted_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread while the stream runs,
    even where SIGINT was inherited as ignored (a job started in the background by a script)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, _raise_keyboard_interrupt) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    """Signal handler: end the stream as Ctrl-C does."""
    raise KeyboardInterrupt


def devices(args: argparse.Namespace) -> int:
    """List the input devices PortAudio sees (* marks the default)."""
    found = input_devices()
    if not found:
        print("no audio input devices found", file=sys.stderr)
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
        "but 8 kHz (telephone) audio lacks everything above 4 kHz and shifts readings a lot "
        "(bundled model: arousal lower, valence higher; see the README, 8 kHz audio)",
        f"embedding:     {model.embedding_size or 'none'}",
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


def _row_writer(fmt: str, files: list[str]) -> RowWriter:
    """The writer of ``score --format``."""
    if fmt == "csv":
        return CsvRows(sys.stdout)
    if fmt == "jsonl":
        return JsonRows(sys.stdout)
    return TableRows(sys.stdout, max(map(len, files)))


def _parser() -> argparse.ArgumentParser:
    """The argument parser of all sub-commands."""
    parser = OneLineParser(
        prog=PROG, description="Arousal, dominance and valence from a voice, on device."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    common = OneLineParser(add_help=False)
    common.add_argument("--model", help="ONNX model file (default: the bundled model)")
    common.add_argument("--config", help="TOML file of settings (flags override it)")
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
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (walked)")
    p.add_argument("--format", choices=SCORE_FORMATS, help="output rows (default csv)")
    p.add_argument("--per-window", action="store_true", default=None,
                   help="one row per window, not per file")  # fmt: skip
    p.add_argument("--plot", metavar="OUT",
                   help="draw A/D/V over time: OUT.png for one file, a folder for several "
                   "(needs the [plot] extra)")  # fmt: skip
    p.set_defaults(command=score)

    p = commands.add_parser("stream", parents=[common], help="live readings from a device")
    p.add_argument("--device", help="input device index or name (see `edgeser devices`)")
    p.add_argument("--from-file", metavar="F", help="stream an audio file instead of a device")
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

    p = commands.add_parser("devices", help="list audio input devices")
    p.set_defaults(command=devices)

    p = commands.add_parser("info", help="print a model's contract and model card")
    p.add_argument("model", nargs="?", metavar="MODEL", help="ONNX file (default: bundled)")
    p.set_defaults(command=info)
    return parser

