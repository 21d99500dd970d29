"""Write a run's results: ``results.json`` (everything), ``RESULTS.md`` (tables) and
``latency.png`` (median latency per model, log scale, p95 as whiskers)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

RATIO_LABELS = {
    "teacher_wav2vec2_over_student_int8": "wav2vec2 teacher / int8 student (per 3 s window)",
    "teacher_reference_over_student_int8": "reference teacher / int8 student (per 3 s window)",
    "rescoring_over_incremental_per_hop": "stream per hop: re-scoring / incremental (wall)",
    "rescoring_over_incremental_per_hop_cpu": "stream per hop: re-scoring / incremental (CPU)",
    "rescoring_over_incremental_macs": "stream per hop: re-scoring / incremental (MACs)",
}


LATENCY_HEADER = ["workload", "params", "MACs/call", "threads", "audio/call", "p50 ms", "p95 ms",
                  "p99 ms", "CPU p50 ms", "RTF", "n", "weights"]  # fmt: skip


def latency_row(r: dict[str, Any]) -> list[Any]:
    """One latency table row: wall-time percentiles, CPU-time median, compute and RTF."""
    times = [_ms(r[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "cpu_p50_ms")]
    head = [r["name"], _count(r["params"]), _count(r["macs"]), r["threads"], f"{r['audio_s']:g} s"]
    return [*head, *times, f"{r['rtf']:.4f}", r["n"], r["note"]]


QUALITY_REPORT = Path(__file__).resolve().parent / "quality.md"


def quality_link(out_dir: Path) -> str:
    """The link from a RESULTS.md in ``out_dir`` to the committed quality report (written
    elsewhere than benchmarks/, e.g. benchmarks/published/, a bare "quality.md" is broken)."""
    return Path(os.path.relpath(QUALITY_REPORT, out_dir.resolve())).as_posix()


def write_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the three files into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "RESULTS.md", out_dir / "latency.png"]
    paths[0].write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    kept = sections(paths[1].read_text()) if paths[1].is_file() else {}
    paths[1].write_text(markdown(results, quality_link(out_dir)) + "".join(kept.values()))
    plot_latency(results, paths[2])
    return paths


SECTION = re.compile(r"\n<!-- section: (?P<name>[\w.-]+) -->\n.*?\n<!-- /section -->\n", re.S)


def sections(text: str) -> dict[str, str]:
    """The sections of RESULTS.md that focused benchmarks (``python -m benchmarks.backends``,
    ...) maintain, by name: a full run keeps them."""
    return {m["name"]: m[0] for m in SECTION.finditer(text)}


def update_section(path: Path, name: str, lines: list[str]) -> None:
    """Replace (or append) the section ``name`` of the markdown file at ``path``."""
    text = path.read_text() if path.is_file() else ""
    block = f"\n<!-- section: {name} -->\n" + "\n".join(lines).strip("\n") + "\n<!-- /section -->\n"
    old = sections(text).get(name)
    path.write_text(text.replace(old, block) if old else text.rstrip("\n") + "\n" + block)


def publish_focused(
    out: Path, stem: str, name: str, results: dict[str, Any], command: str, lines: list[str]
) -> None:
    """A focused benchmark's results: ``OUT/STEM.json`` (with its command), its section
    ``name`` of ``OUT/RESULTS.md`` replaced, and the section printed."""
    results["command"] = command
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    update_section(out / "RESULTS.md", name, lines)
    print("\n".join(lines))


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table (for the focused benchmarks' sections)."""
    return _table(header, rows)


def markdown(results: dict[str, Any], quality: str = "quality.md") -> str:
    """The RESULTS.md text: machine, then one table per section (``quality``: the link to the
    quality report from where the text is written)."""
    m, cfg = results["machine"], results["config"]
    lines = [
        "# edgeser benchmarks",
        "",
        f"Produced by `{results['command']}` on {m['date_utc']} (commit `{m['git']}`).",
        "Medians of repeated calls on the same audio (`"
        + cfg["audio"]
        + "`, tiled where longer audio is needed); RTF = median compute time / audio time.",
        f"Model quality (CCC, AUC per corpus) is in [quality.md]({quality}).",
        "",
    ]
    if cfg.get("quick"):
        lines += ["**Quick mode: tiny stand-ins and few iterations; these are not figures.**", ""]
    lines += _table(
        ["machine", ""],
        [
            ["CPU", m["cpu"]],
            ["cores (logical / usable)", f"{m['cores_logical']} / {m['cores_usable']}"],
            ["memory", f"{m['memory_gib']} GiB"],
            ["load average at start (1 min)", m["load_average_1m"]],
            ["GPU", m["gpu"] or "none"],
            ["OS / Python", f"{m['os']} / {m['python']}"],
            ["versions", ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)],
        ],
    )
    lines += ["## Latency", "", "![latency per model](latency.png)", ""]
    lines += _table(LATENCY_HEADER, [latency_row(r) for r in results["latency"]])
    teacher_ratios = {k: v for k, v in results["ratios"].items() if k.startswith("teacher_")}
    if teacher_ratios:
        lines += ["## Speed ratios (one thread, medians)", ""]
        lines += _table(
            ["ratio", "value"],
            [[RATIO_LABELS[k], f"{v:.1f}x"] for k, v in teacher_ratios.items()],
        )
    if "streaming" in results:
        lines += streaming_section(results)
    if "memory" in results:
        mem = results["memory"]
        lines += ["## Memory and cold start (runtime only, one thread)", ""]
        rows = [
            ["RSS after `import edgeser`", f"{mem['rss_runtime_imported_mib']} MiB"],
            ["memory added by loading the model", f"{mem['model_load_added_mib']} MiB"],
            ["peak RSS, scoring a 3 s file in-process", f"{mem['peak_rss_mib']} MiB"],
        ]
        if "cold_start" in results:
            cold = results["cold_start"]
            rows += [
                [
                    f"cold start to first reading: `{cold['command']}`",
                    f"{cold['median_s']} s (median of {cold['runs']})",
                ],
                ["peak RSS of that process", f"{cold['peak_rss_mib']} MiB"],
            ]
        lines += [f"Model: {mem['model']}.", "", *_table(["what", "value"], rows)]
    lines += ["## Model file sizes", ""]
    lines += _table(["file", "size"], [[s["what"], _size(s["bytes"])] for s in results["sizes"]])
    if results["throughput"]:
        lines += ["## Distillation throughput", ""]
        lines += [
            "Through `edgeser.distill`: labelling = decode, augment, teacher, store commit; "
            "training = CCC loss, AdamW, backward, on the labelled crops.",
            "",
        ]
        if not any(t["device"].startswith("cuda") for t in results["throughput"]):
            lines += ["No GPU on this machine (torch sees no CUDA device): CPU figures only.", ""]
        lines += _table(
            ["what", "device", "value", "setting"],
            [
                [t["what"], t["device"], f"{t['value']:.3g} {t['unit']}", t["detail"]]
                for t in results["throughput"]
            ],
        )
    if results["skipped"]:
        lines += ["## Not measured in this run", ""]
        lines += [f"- {s['what']}: {s['why']}" for s in results["skipped"]] + [""]
    return "\n".join(lines)


def streaming_section(results: dict[str, Any]) -> list[str]:
    """Per-hop cost of window re-scoring vs. the incremental graph, for the same model."""
    st, ratios = results["streaming"], results["ratios"]
    floats = st["state_floats"]
    rows = [
        ["MACs per hop, re-scoring the window", _count(st["macs_rescoring_per_hop"])],
        ["MACs per hop, incremental", _count(st["macs_incremental_per_hop"])],
        *[
            [RATIO_LABELS[key], f"{ratios[key]:.1f}x"]
            for key in (
                "rescoring_over_incremental_macs",
                "rescoring_over_incremental_per_hop_cpu",
                "rescoring_over_incremental_per_hop",
            )
            if key in ratios
        ],
        ["streaming state per stream", f"{floats:,} floats ({floats * 4 / 1e6:.2f} MB)"],
    ]
    intro = (
        f"Window {st['window_s']:g} s, hop {st['hop_s']:g} s, model {st['model']}: the same "
        "model re-scoring the window at every hop vs. its incremental graph "
        "(`<model>.stream.onnx`, see docs/streaming.md). Timed ratios: one thread."
    )
    return ["## Streaming: cost per hop", "", intro, "", *_table(["what", "value"], rows)]


def plot_latency(results: dict[str, Any], path: Path) -> None:
    """Horizontal bars of p50 latency per workload at one thread, log scale, p95 whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in results["latency"] if r["threads"] == 1]
    labels = [f"{r['name']}\n({r['audio_s']:g} s of audio per call)" for r in rows]
    p50 = [r["p50_ms"] for r in rows]
    err = [[0] * len(rows), [r["p95_ms"] - r["p50_ms"] for r in rows]]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    ax.barh(range(len(rows)), p50, xerr=err, color="tab:blue", capsize=3)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(p50) / 3, max(r["p95_ms"] for r in rows) * 3)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("latency per call, ms (median; whisker: p95), one CPU thread")
    for i, r in enumerate(rows):
        ax.text(r["p95_ms"] * 1.05, i, f"{_ms(r['p50_ms'])} ms", va="center", fontsize=8)
    ax.set_title(f"edgeser latency ({results['machine']['cpu']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _ms(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _count(v: int | None) -> str:
    if v is None:
        return "-"
    if v >= 1e9:
        return f"{v / 1e9:.1f}G"
    return f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v / 1e3:.1f}K"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"
