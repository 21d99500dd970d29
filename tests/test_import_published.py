"""``edgeser-export FOLDER``: a folder in the published audeering/wav2small layout (random
weights, exact names and shapes) becomes a checked edgeser model, equal to a plain PyTorch
forward of that layout; a broken folder is refused in one line naming what is wrong."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from edgeser.distill.wav2small_published import PublishedWav2Small, load_published
from edgeser.export import import_published
from edgeser.export.cli import main as export_main
from edgeser.export.config import ExportConfig
from edgeser.export.parity import BATCH_SIZES, FULL_LENGTHS, probe_signals, session
from edgeser.export.pipeline import run_export
from published_layout import random_tensors, read_tensors, reference_forward, write_published
from safetensors.torch import save_file
from test_export import clips

import edgeser
from edgeser.contract import INPUT_NAME, SAMPLE_RATE, parse_metadata


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_published(tmp_path_factory.mktemp("hub") / "wav2small")


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calibration")
    for i, clip in enumerate(clips(seed=3, n=16, seconds=3.0)[0]):
        sf.write(str(folder / f"clip{i:02d}.wav"), clip, SAMPLE_RATE, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def exported(published: Path, calibration: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exported") / "models"
    settings = {"calibration_crops": 16, "heldout_crops": 16, "crop_s": 2.0}
    files = run_export(
        ExportConfig(published, out, int8=True, calibration=(calibration,), **settings)
    )
    return {f.path.name: f.path for f in files}


def test_the_layout_loads_into_the_published_architecture_and_matches_the_reference(
    published: Path,
) -> None:
    model, config = load_published(published)
    assert isinstance(model, PublishedWav2Small) and config["model_type"] == "wav2vec2"
    tensors = read_tensors(published)
    assert set(model.state_dict()) == set(tensors)  # the published names, all of them
    x = torch.from_numpy(probe_signals(3, SAMPLE_RATE))
    with torch.no_grad():
        ours, ref = model(x), reference_forward(tensors, x)
    assert ours[1].shape == (3, 338)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert float(ours[0].std(0).min()) > 1e-3  # readings vary: the comparison means something


def test_onnx_equals_the_plain_pytorch_forward_from_0_25_to_30_s_at_batch_1_and_8(
    published: Path, exported: dict[str, Path]
) -> None:
    """A/D/V to 1e-5 absolute; the 338 features (z z^T is quadratic) to 1e-5 of their scale."""
    tensors = read_tensors(published)
    sess = session(exported["wav2small.onnx"])
    worst_adv = worst_emb = 0.0
    for n in FULL_LENGTHS:
        for b in BATCH_SIZES:
            x = probe_signals(b, n, seed=7)
            adv, emb = sess.run(None, {INPUT_NAME: x})
            with torch.no_grad():
                ref_adv, ref_emb = (t.numpy() for t in reference_forward(tensors, torch.tensor(x)))
            worst_adv = max(worst_adv, np.abs(adv - ref_adv).max())
            scale = max(1.0, np.abs(ref_emb).max())
            worst_emb = max(worst_emb, np.abs(emb - ref_emb).max() / scale)
    assert FULL_LENGTHS[0] == 4000 and FULL_LENGTHS[-1] == 30 * SAMPLE_RATE
    assert worst_adv <= 1e-5 and worst_emb <= 1e-5


def test_the_model_card_says_where_it_came_from_its_licence_and_weights_hash(
    published: Path, exported: dict[str, Path]
) -> None:
    sha = hashlib.sha256((published / "model.safetensors").read_bytes()).hexdigest()
    for name in ("wav2small.onnx", "wav2small.int8.onnx"):
        info = parse_metadata({p.key: p.value for p in onnx.load(exported[name]).metadata_props})
        card = info.card
        assert card == json.loads(exported[name].with_suffix(".json").read_text())
        assert card["imported"]["source"] == str(published)
        assert card["imported"]["weights_sha256"] == sha == card["checkpoint"]["sha256"]
        assert card["imported"]["licence"] == "CC BY-NC-SA 4.0"
        assert "CC BY-NC-SA 4.0" in card["licences"]
        assert card["architecture"]["variant"] == "published"
        assert card["architecture"]["parameters"] == 10806  # trainable; + frozen DFT/mel
        assert info.model_version == f"wav2small-{sha[:12]}"
        assert "audeering/wav2small" in info.teacher
    assert exported["wav2small.onnx"].parent.joinpath("wav2small.json").is_file()
    # per-utterance normalisation: no exact incremental graph, so none is written
    assert not list(exported["wav2small.onnx"].parent.glob("*.stream.onnx"))
    card = json.loads(exported["wav2small.onnx"].with_suffix(".json").read_text())
    assert card["parity"]["limit"] == 1e-5 and card["parity"]["max_abs_diff_vs_torch"] <= 1e-5


def test_int8_passes_the_usual_gate_and_both_files_work_in_the_runtime(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    int8 = json.loads(exported["wav2small.int8.onnx"].with_suffix(".json").read_text())
    assert min(int8["parity"]["ccc_vs_fp32"].values()) >= int8["parity"]["min_ccc"] == 0.99
    clip = clips(seed=9, n=1, seconds=2.0)[0][0]
    readings = []
    for name in ("wav2small.onnx", "wav2small.int8.onnx"):
        model = edgeser.load(exported[name])
        reading = model.predict(clip, SAMPLE_RATE)
        assert reading.embedding.shape == (338,)
        readings.append(reading.adv)
    assert np.allclose(readings[0], readings[1], atol=0.05)
    wav = tmp_path / "speech.wav"
    sf.write(str(wav), clip, SAMPLE_RATE, subtype="PCM_16")
    run = subprocess.run(
        [sys.executable, "-m", "edgeser", "score", "--model", str(exported["wav2small.onnx"]),
         str(wav)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "file,start_s,end_s,arousal,dominance,valence"


def test_a_hub_id_is_downloaded_with_huggingface_hub(published: Path, tmp_path, monkeypatch):
    asked = []

    def fake_download(repo_id: str, allow_patterns: list[str]) -> str:
        asked.append((repo_id, sorted(allow_patterns)))
        return str(published)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_download)
    source = import_published.load_source(Path("audeering/wav2small"))
    assert asked == [("audeering/wav2small", ["config.json", "model.safetensors"])]
    assert source.imported["source"] == "audeering/wav2small"
    assert isinstance(source.model, PublishedWav2Small)


def _edited(folder: Path, edit) -> None:
    tensors = random_tensors()
    edit(tensors)
    write_published(folder, tensors)


def _no_config(folder: Path) -> None:
    write_published(folder)
    (folder / "config.json").unlink()


def _junk_weights(folder: Path) -> None:
    write_published(folder)
    (folder / "model.safetensors").write_bytes(b"junk")


def _other_model(folder: Path) -> None:
    folder.mkdir()
    save_file({"x": torch.zeros(2)}, folder / "model.safetensors")
    (folder / "config.json").write_text("{}")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: _edited(d, lambda t: t.pop("vgg7.l3.conv.weight")),
            "not the published Wav2Small layout: missing 1 of 52 tensors: vgg7.l3.conv.weight",
        ),
        (
            lambda d: _edited(d, lambda t: t.update({"adv.weight": torch.zeros(3, 169)})),
            "misshapen: adv.weight [3, 169] (expected [3, 338])",
        ),
        (_no_config, "no config.json (the published Wav2Small layout)"),
        (_junk_weights, "model.safetensors: not a readable safetensors file"),
        (_other_model, "missing 45 of 52 tensors: vgg7.l1.conv.weight, vgg7.l1.norm.weight"),
    ],
)
def test_a_broken_folder_is_refused_in_one_line_naming_the_problem(
    make, message: str, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "w2s"
    make(folder)
    code = export_main([str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("edgeser-export: error: ") and message in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["/nothing/here", "runs/missing/student.pt"])
def test_a_path_that_is_neither_file_folder_nor_hub_id_is_a_clear_error(
    missing: str, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.snapshot_download", pytest.fail)  # never asked
    code = export_main([missing, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and f"{missing}: no such checkpoint file, folder or hub id" in err


def test_the_runtime_runs_the_imported_model_without_librosa_or_torch(
    exported: dict[str, Path],
) -> None:
    """The filterbank is a constant in the graph: scoring imports no workstation library."""
    script = (
        "import sys, numpy as np, edgeser\n"
        "m = edgeser.load(sys.argv[1])\n"
        "m.predict(np.sin(np.arange(32000) / 9).astype(np.float32), 16000)\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'librosa', 'torch', 'onnx'}))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(exported["wav2small.int8.onnx"])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
