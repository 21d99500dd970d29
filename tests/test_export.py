"""export/: a student trained for a few steps -> fp32 and int8 ONNX, checked for parity.

The student learns three properties of generated speech-like audio (pitch, noisiness,
syllable rate), so its readings vary from clip to clip and the int8 CCC means something.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from edgeser.distill.metrics import ccc, ccc_loss
from edgeser.distill.student import StudentConfig, Wav2Small, load_student, save_student
from edgeser.export.config import ExportConfig, ExportError
from edgeser.export.parity import FULL_LENGTHS, ParityError, probe_signals, session
from edgeser.export.pipeline import run_export
from edgeser.export.quantize import load_calibration_audio

import edgeser
from edgeser.contract import INPUT_NAME, MIN_SAMPLES, SAMPLE_RATE, parse_metadata

TEACHER = "synthetic-targets:pitch,noise,rate"
TRAINING_DATA = [{"name": "generated tones and noise", "licence": "CC0-1.0"}]


def voice(rng: np.random.Generator, seconds: float, target: np.ndarray) -> np.ndarray:
    """A speech-like clip whose pitch, noisiness and syllable rate follow ``target`` (0..1)."""
    pitch, noisiness, rate = target
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 90 * 2 ** (2 * pitch) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    harmonic = sum(np.sin(k * phase) / k for k in range(1, 12)) / 2
    source = (1 - noisiness) * harmonic + noisiness * rng.standard_normal(t.size)
    syllables = np.clip(np.sin(np.pi * (2 + 6 * rate) * t + rng.uniform(0, np.pi)), 0, None) ** 2
    gain = 10 ** rng.uniform(-1.5, -0.3)
    return (gain * syllables * source + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def clips(seed: int, n: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips [n, samples] and their targets [n, 3]."""
    rng = np.random.default_rng(seed)
    targets = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    return np.stack([voice(rng, seconds, y) for y in targets]), targets


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Wav2Small trained for 40 steps on the generated clips, saved with save_student."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = map(torch.from_numpy, clips(seed=0, n=64, seconds=0.5))
    model = Wav2Small(StudentConfig.preset("wav2small"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0)
    for _ in range(40):
        batch = torch.from_numpy(order.choice(len(x), 8, replace=False))
        adv, _ = model(x[batch])
        loss = ccc_loss(adv, y[batch]) + ((adv - y[batch]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-student.pt"
    save_student(
        path,
        model.eval(),
        teacher_id=TEACHER,
        training_data=TRAINING_DATA,
        metrics={"steps": 40},
        seed=0,
    )
    return path


def calibration_folder(folder: Path) -> Path:
    """``folder`` with 24 generated speech-like 4 s wav files (16-bit PCM)."""
    audio, _ = clips(seed=1, n=24, seconds=4.0)
    for i, clip in enumerate(audio):
        sf.write(str(folder / f"clip{i:02d}.wav"), clip, SAMPLE_RATE, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated speech-like wav files (16-bit PCM), plus one corrupt file to be skipped."""
    folder = calibration_folder(tmp_path_factory.mktemp("calibration"))
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    return folder


def config(checkpoint: Path, out: Path, **overrides) -> ExportConfig:
    """Export settings with fewer, shorter crops than the defaults (the tests' audio is short)."""
    values = {"calibration_crops": 32, "heldout_crops": 24, "crop_s": 2.0, **overrides}
    return ExportConfig(checkpoint=checkpoint, out=out, **values)


@pytest.fixture(scope="module")
def exported(checkpoint: Path, calibration: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real export run, fp32 and int8, into a fresh folder."""
    out = tmp_path_factory.mktemp("exported") / "models"
    files = run_export(config(checkpoint, out, int8=True, calibration=(calibration,)))
    return {f.path.name: f for f in files}


def test_fp32_graph_is_clean_standard_and_dynamic(exported) -> None:
    model = onnx.load(exported["tiny-student.onnx"].path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 13 and "Identity" not in ops and "Constant" not in ops
    conv_out = {o for n in model.graph.node if n.op_type == "Conv" for o in n.output}
    batchnorm_inputs = [n.input[0] for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert not conv_out & set(batchnorm_inputs)  # every Conv+BN folded
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output]
    }
    assert dims == {
        INPUT_NAME: ["batch", "samples"],
        "adv": ["batch", 3],
        "embedding": ["batch", 169],
    }


def test_both_files_load_in_onnxruntime_cpu_without_warnings(exported, capfd) -> None:
    for exported_file in exported.values():
        options = ort.SessionOptions()
        options.log_severity_level = 1  # info and up: would show every warning
        options.log_verbosity_level = 0
        sess = ort.InferenceSession(
            str(exported_file.path), options, providers=["CPUExecutionProvider"]
        )
        sess.run(None, {INPUT_NAME: probe_signals(2, SAMPLE_RATE)})
    logged = capfd.readouterr().err
    assert logged  # info lines prove the log reaches stderr...
    assert not [line for line in logged.splitlines() if "[W:" in line or "[E:" in line]


@pytest.mark.slow
def test_fp32_matches_torch_from_minimum_to_30_s_at_batch_1_and_8(checkpoint, exported) -> None:
    model, _ = load_student(checkpoint)
    sess = session(str(exported["tiny-student.onnx"].path))
    assert FULL_LENGTHS[0] == MIN_SAMPLES and FULL_LENGTHS[-1] == 30 * SAMPLE_RATE
    for batch in (1, 8):
        for samples in FULL_LENGTHS:
            signal = probe_signals(batch, samples, seed=7)
            with torch.no_grad():
                expected = [t.numpy() for t in model(torch.from_numpy(signal))]
            got = sess.run(None, {INPUT_NAME: signal})
            for g, e in zip(got, expected, strict=True):
                assert g.shape == e.shape
                assert np.abs(g - e).max() <= 1e-4, (batch, samples)


def test_numpy_backend_runs_both_exported_files_like_onnxruntime(exported) -> None:
    """The numpy backend on a trained student's fp32 and int8 files (batch of 24 held-out
    clips, plus a minimum-length one): readings within 1e-4 of onnxruntime."""
    from edgeser.numpy_backend import NumpySession

    audio, _ = clips(seed=98, n=24, seconds=3.0)
    for name in ("tiny-student.onnx", "tiny-student.int8.onnx"):
        path = exported[name].path
        for signal in (audio, audio[:1, :MIN_SAMPLES]):
            expected = session(str(path)).run(None, {INPUT_NAME: signal})
            got = NumpySession(path).run(None, {INPUT_NAME: signal})
            np.testing.assert_allclose(got[0], expected[0], atol=1e-4, rtol=0, err_msg=name)
            # an attention value one int8 step away moves the embedding a little more
            np.testing.assert_allclose(got[1], expected[1], atol=5e-4, rtol=0, err_msg=name)


def test_int8_is_small_static_qdq_and_tracks_fp32_on_held_out_audio(exported) -> None:
    fp32_file, int8_file = exported["tiny-student.onnx"], exported["tiny-student.int8.onnx"]
    assert int8_file.size_bytes == int8_file.path.stat().st_size < 120_000
    assert fp32_file.size_bytes > 2.5 * int8_file.size_bytes
    model = onnx.load(int8_file.path)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not ops & {"ConvInteger", "DynamicQuantizeLinear", "MatMulInteger"}  # not dynamic
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in int8_weights) > 65_000  # the 3x3 and 1x1 convs
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    init = {t.name: t for t in model.graph.initializer}
    conv2d = [n for n in model.graph.node if n.op_type == "Conv"
              and (n.input[1] in dequantized or len(init[n.input[1]].dims) == 4)]  # fmt: skip
    float_2d = [n for n in conv2d if n.input[1] not in dequantized]
    assert float_2d == conv2d[:1] and len(conv2d) > 2  # only the first 3x3 conv stays float
    audio, _ = clips(seed=99, n=24, seconds=3.0)  # audio neither calibration nor training saw
    fp32 = session(str(fp32_file.path)).run(None, {INPUT_NAME: audio})[0]
    int8 = session(str(int8_file.path)).run(None, {INPUT_NAME: audio})[0]
    assert fp32.std(axis=0).min() > 0.05  # the student's readings really vary
    assert ccc(int8, fp32).min() >= 0.99
    recorded = int8_file.parity["ccc_vs_fp32"]
    assert set(recorded) == set(int8_file.parity["fp32_std"]) == {"arousal", "dominance", "valence"}
    assert min(recorded.values()) >= 0.99
    assert 0 < int8_file.parity["max_abs_diff_vs_fp32"] < 0.1


def test_both_files_load_through_the_runtime_with_contract_metadata(
    checkpoint: Path, exported
) -> None:
    signal = probe_signals(1, 2 * SAMPLE_RATE, seed=3)[0]
    readings = {}
    for name, exported_file in exported.items():
        model = edgeser.load(exported_file.path)
        assert (model.info.window_s, model.info.hop_s) == (3.0, 1.0)
        assert model.info.teacher == TEACHER
        assert model.embedding_size == 169
        readings[name] = model.predict(signal, SAMPLE_RATE)
    student, _ = load_student(checkpoint)
    with torch.no_grad():
        expected = student(torch.from_numpy(signal[None]))[0][0].numpy()
    fp32 = readings["tiny-student.onnx"]
    assert np.allclose([fp32.arousal, fp32.dominance, fp32.valence], expected, atol=1e-4)


def test_model_card_is_embedded_and_written_beside_the_model(checkpoint: Path, exported) -> None:
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for name, exported_file in exported.items():
        model = onnx.load(exported_file.path)
        info = parse_metadata({p.key: p.value for p in model.metadata_props})
        card = json.loads(exported_file.card_path.read_text())
        assert exported_file.card_path == exported_file.path.with_suffix(".json")
        assert info.card == card
        assert card["file"] == name
        assert card["teacher"] == TEACHER
        assert card["training_data"] == TRAINING_DATA
        assert card["checkpoint"] == {"file": checkpoint.name, "sha256": sha}
        assert card["edgeser_version"] == edgeser.__version__
        assert card["metrics"] == {"steps": 40}
        assert card["training"] == {"seed": 0}
        assert card["architecture"]["parameters"] == 72_038
        assert card["export"]["opset"] == 17
        assert info.model_version == card["model_version"] == f"tiny-student-{sha[:12]}"
    int8_card = json.loads(exported["tiny-student.int8.onnx"].card_path.read_text())
    quantization = int8_card["export"]["quantization"]
    assert quantization["format"] == "QDQ"
    assert quantization["calibration_crops"] == 32
    assert quantization["calibration_files"] == 25  # 24 clips and the corrupt file
    assert int8_card["parity"]["heldout_crops"] == 24


def test_calibration_crops_come_from_other_files_than_held_out_ones(tmp_path: Path) -> None:
    """Each file holds +-level samples of its own level, so a crop's peak names its file:
    from a folder, files are held out at random; from a manifest, its dev rows are."""
    rng = np.random.default_rng(0)
    levels = [round(0.05 * (i + 1), 2) for i in range(6)]
    for level in levels:
        signs = rng.choice([-1.0, 1.0], 2 * SAMPLE_RATE)
        sf.write(str(tmp_path / f"{level}.wav"), level * signs, SAMPLE_RATE, subtype="FLOAT")
    (tmp_path / "broken.flac").write_bytes(b"fLaC but not really")
    (tmp_path / "short.wav").write_bytes(b"")
    sf.write(str(tmp_path / "tiny.wav"), np.ones(MIN_SAMPLES - 1) * 0.5, SAMPLE_RATE)
    audio = load_calibration_audio(
        [tmp_path], calibration_crops=40, heldout_crops=20, crop_s=0.5, seed=0
    )
    assert audio.files == 9 and audio.skipped == 3  # every file was tried: 3 unusable
    assert all(c.shape == (SAMPLE_RATE // 2,) for c in audio.calibration + audio.heldout)
    source = {round(float(np.abs(c).max()), 2) for c in audio.calibration}
    held = {round(float(np.abs(c).max()), 2) for c in audio.heldout}
    assert source and held and not source & held and source | held <= set(levels)
    manifest = tmp_path / "manifest.csv"
    rows = [f"{level}.wav,{'dev' if level in (0.1, 0.25) else 'train'}" for level in levels]
    manifest.write_text("path,split\n" + "\n".join(rows) + "\n")
    audio = load_calibration_audio(
        [manifest], calibration_crops=8, heldout_crops=4, crop_s=0.5, seed=0
    )
    assert {round(float(np.abs(c).max()), 2) for c in audio.heldout} == {0.1, 0.25}
    assert {round(float(np.abs(c).max()), 2) for c in audio.calibration} == {0.05, 0.15, 0.2, 0.3}


def test_int8_below_the_threshold_is_refused_and_nothing_is_written(
    checkpoint: Path, calibration: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models"
    settings = config(
        checkpoint,
        out,
        int8=True,
        calibration=(calibration,),
        min_ccc=1.0,  # int8 never matches fp32 exactly
        calibration_crops=8,
        heldout_crops=8,
        crop_s=1.0,
    )
    with pytest.raises(ParityError, match=r"below the minimum 1\.0.*readings vary with std"):
        run_export(settings)
    assert not out.exists()


def test_fp32_parity_failure_is_refused_and_nothing_is_written(
    checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models"
    with pytest.raises(ParityError, match="differs from torch"):
        run_export(config(checkpoint, out, max_abs_diff=1e-12))
    assert not out.exists()


def test_existing_output_folder_needs_force(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="exists; pass --force"):
        run_export(config(checkpoint, out))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    files = run_export(config(checkpoint, out, force=True, name="again"))
    assert [f.path.name for f in files] == ["again.onnx"]
    assert sorted(p.name for p in out.iterdir()) == ["again.json", "again.onnx", "notes.txt"]


def test_unknown_architecture_and_unusable_calibration_are_clear_errors(
    checkpoint: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}, "arch": "resnet"}, foreign)
    with pytest.raises(ExportError, match="unknown architecture"):
        run_export(config(foreign, tmp_path / "a"))
    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("hello")
    with pytest.raises(ExportError, match=r"not a student checkpoint \(not a file written by"):
        run_export(config(not_torch, tmp_path / "b"))
    with pytest.raises(ExportError, match="no such checkpoint"):
        run_export(config(tmp_path / "missing.pt", tmp_path / "c"))
    with pytest.raises(ExportError, match="no such file, folder or manifest"):
        run_export(config(checkpoint, tmp_path / "d", int8=True, calibration=(tmp_path / "x",)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="no audio files"):
        run_export(config(checkpoint, tmp_path / "e", int8=True, calibration=(empty,)))
    assert not any((tmp_path / d).exists() for d in "abcde")


@pytest.mark.slow
def test_cli_with_toml_settings_and_manifest_calibration_prints_the_table(
    checkpoint: Path, calibration: Path, tmp_path: Path
) -> None:
    """The real console entry point in a subprocess, calibrating from a manifest CSV."""
    manifest = tmp_path / "manifest.csv"
    rows = [f"{calibration / f'clip{i:02d}.wav'},train" for i in range(24)]
    manifest.write_text("path,split\n" + "\n".join(rows) + "\n")
    settings = tmp_path / "export.toml"
    settings.write_text(
        f'[export]\ncheckpoint = "{checkpoint}"\nint8 = true\ncalibration = ["{manifest}"]\n'
        "calibration_crops = 16\nheldout_crops = 16\ncrop_s = 2.0\nwindow_s = 2.0\n"
    )
    out = tmp_path / "models"
    command = [
        *(sys.executable, "-m", "edgeser.export.cli", "--config", str(settings)),
        *("--out", str(out), "--name", "cli", "--hop", "0.5"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["file", "size", "parity"]
    table = {line.split()[0]: line for line in lines[1:]}
    assert set(table) == {"cli.onnx", "cli.json", "cli.int8.onnx", "cli.int8.json"}
    assert "max |onnx - torch|" in table["cli.onnx"]
    scores = re.search(r"CCC vs fp32: A (\S+) D (\S+) V (\S+)", table["cli.int8.onnx"])
    assert scores and min(map(float, scores.groups())) >= 0.99
    size_kb = float(table["cli.int8.onnx"].split()[1])
    assert size_kb == pytest.approx((out / "cli.int8.onnx").stat().st_size / 1000, abs=0.05)
    assert "Traceback" not in done.stderr
    info = edgeser.load(out / "cli.int8.onnx").info
    assert (info.window_s, info.hop_s) == (2.0, 0.5)  # from the TOML and the flag
