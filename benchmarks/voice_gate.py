"""The voice gate on real speech in noise, at input gains from -40 to +10 dB.

    python -m benchmarks.voice_gate            (from the repository root; ~3 min on 2 cores)

For each shared corpus, utterances of its dev split are laid out as a stream: per speaker,
utterances separated by 4 s pauses, the whole mixed with a noise (white, pink, or babble made
of six train-split speakers of the corpora talking at once; pink noise also with the voice
reverberant, or with the mix through a telephone band) at an SNR (active speech RMS vs noise
RMS), then scaled by a gain and clipped to full scale as a converter would. Each gate
scores the stream with the bundled model's window and hop (3 s every 1 s) through the same
``WindowScorer`` a ``Stream`` uses. A *speech window* holds at least 0.3 s of active speech
(frames of the clean utterance within 30 dB of its loudest); a *noise window* overlaps no
utterance. Reported: speech windows kept, noise windows rejected. Writes its section
(``voice-gate``) of ``benchmarks/quality.md``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeser.audio import read_audio
from edgeser.contract import SAMPLE_RATE
from edgeser.levels import FRAME, FRAME_HOP, frame_levels_db
from edgeser.readings import Reading
from edgeser.scoring import WindowScorer
from edgeser.vad import EnergyVad, NoiseFloorVad, VoiceGate

from .machine import machine_info
from .report import update_section

REPO = Path(__file__).resolve().parents[1]
CORPORA = ("ravdess", "baved", "turev")
WINDOW_S, HOP_S = 3.0, 1.0
PAUSE_S = 4.0
ACTIVE_DB = 30.0  # active speech: clean frames within this of the utterance's loudest
SPEECH_MIN_S = 0.3
SNRS_DB = (20.0, 10.0, 5.0, 0.0)
GAINS_DB = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0)
# noise, then how the voice reaches the microphone: "+reverb" a far talker in a room (RT60
# 0.6 s, direct-to-reverberant ratio 0 dB), "+phone" the whole mix through a telephone band
NOISES = ("white", "pink", "babble", "pink+reverb", "pink+phone")
RT60_S = 0.6
PHONE_HZ = (300.0, 3400.0)
SECTION = "voice-gate"  # its name in quality.md (benchmarks.report.update_section)


CORPORA_DIR = next(
    (p for p in (REPO.parent / "shared" / "corpora", REPO.parents[1] / "shared" / "corpora")
     if p.is_dir()),
    REPO.parent / "shared" / "corpora",
)  # fmt: skip


def manifest(corpus: str, split: str) -> list[dict[str, str]]:
    """Rows of a corpus manifest in one split."""
    with open(CORPORA_DIR / corpus / "manifest.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def speaker_streams(corpus: str, split: str, per_speaker: int, speakers: int) -> list[tuple]:
    """Per speaker: the clean stream (utterances between pauses) and its active-speech mask."""
    by_speaker: dict[str, list[dict[str, str]]] = {}
    for row in manifest(corpus, split):
        by_speaker.setdefault(row["speaker"], []).append(row)
    streams = []
    for speaker in sorted(by_speaker)[:speakers]:
        rows = by_speaker[speaker][:: max(1, len(by_speaker[speaker]) // per_speaker)]
        pause = np.zeros(round(PAUSE_S * SAMPLE_RATE), np.float32)
        parts, active = [pause], [np.zeros(pause.size, bool)]
        for row in rows[:per_speaker]:
            clean = read_audio(CORPORA_DIR / corpus / row["path"])
            parts += [clean, pause]
            active += [active_mask(clean), np.zeros(pause.size, bool)]
        streams.append((np.concatenate(parts), np.concatenate(active)))
    return streams


def active_mask(clean: np.ndarray) -> np.ndarray:
    """Per sample: inside a frame of the clean utterance within ACTIVE_DB of its loudest."""
    levels = frame_levels_db(clean)
    mask = np.zeros(clean.size, bool)
    for k in np.flatnonzero(levels >= levels.max() - ACTIVE_DB):
        mask[k * FRAME_HOP : k * FRAME_HOP + FRAME] = True
    return mask


def noise(kind: str, n: int, rng: np.random.Generator, babble: np.ndarray) -> np.ndarray:
    """Unit-RMS noise of ``n`` samples."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0))
        x = np.fft.irfft(spectrum, n)
    else:
        start = int(rng.integers(0, babble.size - n)) if babble.size > n else 0
        x = np.resize(babble[start:], n)
    return x / np.sqrt(np.mean(x * x))


def reverberant(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` in a synthetic room: direct path plus an exponentially decaying noise tail of
    equal energy (RT60 ``RT60_S``)."""
    n = np.arange(round(RT60_S * SAMPLE_RATE))
    tail = rng.standard_normal(n.size) * np.exp(-6.908 * n / n.size)
    tail[0] = 0.0
    rir = np.concatenate([[1.0], tail[1:] / np.sqrt(np.sum(tail**2))])
    return np.convolve(clean, rir)[: clean.size]


def phone_band(x: np.ndarray) -> np.ndarray:
    """``x`` through an ideal telephone band-pass (``PHONE_HZ``)."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    spectrum[(freqs < PHONE_HZ[0]) | (freqs > PHONE_HZ[1])] = 0.0
    return np.fft.irfft(spectrum, x.size)


def make_babble(seconds: float) -> np.ndarray:
    """Six train-split talkers of several corpora at once, each a stream without pauses."""
    talkers = []
    for i, corpus in enumerate(CORPORA * 2):
        rows = manifest(corpus, "train")[i * 7 :: 53]
        x = np.concatenate([_trimmed(read_audio(CORPORA_DIR / corpus / r["path"])) for r in rows])
        x = np.resize(x, round(seconds * SAMPLE_RATE))
        talkers.append(x / np.sqrt(np.mean(x * x)))
    return np.sum(talkers, axis=0)


def _trimmed(clip: np.ndarray) -> np.ndarray:
    """The clip without its leading and trailing frames more than 40 dB below its loudest."""
    levels = frame_levels_db(clip)
    loud = np.flatnonzero(levels >= levels.max() - 40.0)
    return clip[loud[0] * FRAME_HOP : loud[-1] * FRAME_HOP + FRAME]


def window_labels(active: np.ndarray, utterance: np.ndarray) -> list[str]:
    """'speech', 'noise' or '' (neither: left out) for each window of the stream."""
    window, hop = round(WINDOW_S * SAMPLE_RATE), round(HOP_S * SAMPLE_RATE)
    labels = []
    for start in range(0, active.size - window + 1, hop):
        if active[start : start + window].sum() >= SPEECH_MIN_S * SAMPLE_RATE:
            labels.append("speech")
        elif not utterance[start : start + window].any():
            labels.append("noise")
        else:
            labels.append("")
    return labels


Decide = Callable[[np.ndarray, bool], list[bool]]  # (audio, with the tail window) -> verdicts


def spans(n: int, tail: bool) -> list[tuple[int, int]]:
    """The windows (start, end) ``score_file`` cuts from ``n`` samples (``tail``: with the
    last window aligned to the end, or the whole audio when shorter than a window)."""
    window, hop = round(WINDOW_S * SAMPLE_RATE), round(HOP_S * SAMPLE_RATE)
    starts = list(range(0, n - window + 1, hop))
    if tail and (not starts or starts[-1] + window < n):
        starts.append(max(0, n - window))
    return [(s, min(n, s + window)) for s in starts]


def runtime_gate(gate: VoiceGate) -> Decide:
    """An edgeser gate's verdict on each window, through the scorer a Stream uses (a stand-in
    model marks the voiced windows)."""

    def mark(window: np.ndarray, start_s: float) -> Reading:
        return Reading(start_s, start_s + window.size / SAMPLE_RATE, 0.0, 0.0, 0.0)

    def decide(x: np.ndarray, tail: bool) -> list[bool]:
        scorer = WindowScorer(mark, WINDOW_S, HOP_S, 4000, gate)
        readings = scorer.push(x.astype(np.float32)) + (scorer.flush() if tail else [])
        return [r.voiced for r in readings]

    return decide


def silero_gate(min_voiced: float = 0.05, threshold: float = 0.5) -> Decide | None:
    """Silero VAD (the ONNX model the ``silero-vad`` package ships, run by onnxruntime over
    the stream in 32 ms chunks with its state, as its own iterator does): a window is voiced
    when at least ``min_voiced`` of its chunks reach ``threshold``. None if not installed."""
    import importlib.util

    import onnxruntime as ort

    spec = importlib.util.find_spec("silero_vad")  # locate, not import: it imports torch
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    chunk, context = 512, 64
    rate = np.array(SAMPLE_RATE, dtype=np.int64)

    def decide(x: np.ndarray, tail: bool) -> list[bool]:
        state = np.zeros((2, 1, 128), np.float32)
        padded = np.concatenate([np.zeros(context, np.float32), x.astype(np.float32)])
        probs = []
        for start in range(context, padded.size - chunk + 1, chunk):
            feed = padded[start - context : start + chunk][np.newaxis, :]
            out, state = session.run(None, {"input": feed, "state": state, "sr": rate})
            probs.append(float(out[0, 0]))
        speech = np.repeat(np.array(probs, dtype=float) >= threshold, chunk)
        speech = np.pad(speech, (0, max(0, x.size - speech.size)))
        return [bool(speech[a:b].mean() >= min_voiced) for a, b in spans(x.size, tail)]

    return decide


def measure(
    gates: dict[str, Decide], per_speaker: int, speakers: int
) -> dict[tuple[str, str, float, float, str], tuple[int, int, int, int]]:
    """(corpus, noise, snr, gain, gate) -> (speech kept, speech, noise rejected, noise)."""
    rng = np.random.default_rng(0)
    babble = make_babble(120.0)
    results: dict[tuple[str, str, float, float, str], tuple[int, int, int, int]] = {}
    for corpus in CORPORA:
        for clean, active in speaker_streams(corpus, "dev", per_speaker, speakers):
            utterance = np.convolve(clean != 0, np.ones(FRAME), mode="same") > 0
            labels = np.array(window_labels(active, utterance))
            speech_rms = float(np.sqrt(np.mean(clean[active].astype(np.float64) ** 2)))
            for kind in NOISES:
                unit = noise(kind.split("+")[0], clean.size, rng, babble)
                voice = reverberant(clean, rng) if kind.endswith("+reverb") else clean
                for snr in SNRS_DB:
                    mix = voice + unit * speech_rms * 10 ** (-snr / 20)
                    mix = phone_band(mix) if kind.endswith("+phone") else mix
                    for gain in GAINS_DB:
                        x = np.clip(mix * 10 ** (gain / 20), -1.0, 1.0)
                        for name, gate in gates.items():
                            voiced = np.array(gate(x, False))[: labels.size]
                            key = (corpus, kind, snr, gain, name)
                            old = results.get(key, (0, 0, 0, 0))
                            results[key] = (
                                old[0] + int(np.sum(voiced & (labels == "speech"))),
                                old[1] + int(np.sum(labels == "speech")),
                                old[2] + int(np.sum(~voiced & (labels == "noise"))),
                                old[3] + int(np.sum(labels == "noise")),
                            )
    return results


FILE_GAINS_DB = (10.0, 0.0, -25.0, -40.0)


def files_found(gates: dict[str, Decide]) -> dict[tuple[str, float], tuple[int, int]]:
    """(gate, gain) -> (dev files with a voiced aggregate, files): each dev file as recorded,
    scaled by a gain and clipped, scored like ``score_file``."""
    found: dict[tuple[str, float], tuple[int, int]] = {}
    for corpus in CORPORA:
        for row in manifest(corpus, "dev"):
            clean = read_audio(CORPORA_DIR / corpus / row["path"]).astype(np.float64)
            for gain in FILE_GAINS_DB:
                x = np.clip(clean * 10 ** (gain / 20), -1.0, 1.0)
                for name, gate in gates.items():
                    hits, total = found.get((name, gain), (0, 0))
                    found[(name, gain)] = (hits + any(gate(x, True)), total + 1)
    return found


def files_markdown(found: dict[tuple[str, float], tuple[int, int]], gates: list[str]) -> list[str]:
    """The table of dev files that get a reading, per gate and gain."""
    lines = [
        "### Dev files that get a reading, by input gain",
        "",
        "Every dev file of the three corpora as recorded (studio-quiet), scaled by the gain and "
        "clipped, scored like `score_file`: the share with a voiced aggregate (a reading).",
        "",
        "| gate | " + " | ".join(f"gain {g:+g} dB" for g in FILE_GAINS_DB) + " |",
        "| --- |" + " --- |" * len(FILE_GAINS_DB),
    ]
    for gate in gates:
        cells = []
        for gain in FILE_GAINS_DB:
            hits, total = found[(gate, gain)]
            cells.append(f"{100 * hits / total:.1f} % ({total - hits} of {total} missed)")
        lines.append(f"| {gate} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(results: dict, found: dict, gates: list[str], command: str, seconds: float) -> str:
    """The quality.md section: per gate, kept / rejected per noise, SNR and gain."""
    info = machine_info(REPO)
    lines = [
        "## Voice gate: speech kept and noise rejected, at any input level",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({info.get('cpu', '?')}) in {seconds:.0f} s. Dev-split utterances of the three "
        f"corpora laid out per speaker with {PAUSE_S:g} s pauses, mixed with noise at an SNR "
        "(active speech RMS over noise RMS; `+reverb`: the voice in a room, RT60 "
        f"{RT60_S:g} s, direct-to-reverberant ratio 0 dB; `+phone`: the mix band-limited to "
        f"{PHONE_HZ[0]:g}-{PHONE_HZ[1]:g} Hz), scaled by a gain and clipped to full scale; "
        f"windows of {WINDOW_S:g} s every {HOP_S:g} s as in the bundled model. Each cell: "
        "speech windows kept / noise-only windows rejected, in %, summed over the corpora. "
        "`NoiseFloorVad` is the default gate; `EnergyVad(-45)` was the default before; "
        "Silero VAD (its `silero-vad` package's ONNX model, benchmark only) is measured on the "
        "same windows when installed, a window being voiced when 5 % of its 32 ms chunks "
        "reach p = 0.5.",
        "",
    ]
    gains = sorted({k[3] for k in results})
    for gate in gates:
        lines += [
            f"### {gate}",
            "",
            "| noise | SNR dB | " + " | ".join(f"gain {g:+g} dB" for g in gains) + " |",
            "| --- | --- |" + " --- |" * len(gains),
        ]
        for kind in NOISES:
            for snr in SNRS_DB:
                cells = []
                for gain in gains:
                    sums = np.sum(
                        [v for k, v in results.items() if k[1:] == (kind, snr, gain, gate)], axis=0
                    )
                    kept = 100 * sums[0] / max(sums[1], 1)
                    rejected = 100 * sums[2] / max(sums[3], 1)
                    cells.append(f"{kept:.0f} / {rejected:.0f}")
                lines.append(f"| {kind} | {snr:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += files_markdown(found, gates)
    totals = np.sum([v for k, v in results.items() if k[4] == gates[0]], axis=0)
    lines += [
        f"Windows per cell: {totals[1] // (len(NOISES) * len(SNRS_DB) * len(gains))} speech, "
        f"{totals[3] // (len(NOISES) * len(SNRS_DB) * len(gains))} noise-only.",
    ]
    return "\n".join(lines) + "\n"



def main(argv: list[str] | None = None) -> int:
    """Measure the gates and write the section of quality.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.voice_gate")
    parser.add_argument("--per-speaker", type=int, default=8, help="utterances per speaker")
    parser.add_argument("--speakers", type=int, default=4, help="dev speakers per corpus")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "quality.md"))
    args = parser.parse_args(argv)
    if not CORPORA_DIR.is_dir():
        print(f"no corpora at {CORPORA_DIR}", file=sys.stderr)
        return 1
    gates: dict[str, Decide] = {
        "NoiseFloorVad()": runtime_gate(NoiseFloorVad()),
        "EnergyVad(-45)": runtime_gate(EnergyVad(threshold_db=-45.0)),
    }
    silero = silero_gate()
    if silero is not None:
        gates["Silero VAD 6 (ONNX, p >= 0.5)"] = silero
    began = time.perf_counter()
    results = measure(gates, args.per_speaker, args.speakers)
    found = files_found(gates)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.voice_gate", *given])
    section = markdown(results, found, list(gates), command, time.perf_counter() - began)
    update_section(Path(args.out), SECTION, section.splitlines())
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
