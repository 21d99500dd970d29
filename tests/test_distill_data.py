"""distill data: sources, crop planning and regeneration, augmentation, held-out splits."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import soundfile as sf
from edgeser.distill.augment import AugmentSpec, apply_augment, sample_augment
from edgeser.distill.config import AugmentConfig, LabelConfig
from edgeser.distill.data import (
    Crop,
    CropAudio,
    DataError,
    find_sources,
    load_noise_bank,
    plan_crops,
    split_crops,
)

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spectrum)])


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(power[(freqs >= lo) & (freqs < hi)].sum())


def label_cfg(**kw) -> LabelConfig:
    return LabelConfig(data=["-"], teacher="-", store="-", **kw)


@pytest.fixture
def folder(tmp_path):
    """Two speakers of 2 s tones, a 0.6 s file, a 0.1 s file and a broken file."""
    root = tmp_path / "data"
    for k, speaker in enumerate(("ann", "bob")):  # no two files alike: identical files are one
        (root / speaker / "sub").mkdir(parents=True)
        sf.write(root / speaker / "a.wav", tone(200 + k, 2.0), SR)
        sf.write(root / speaker / "sub" / "b.flac", tone(300 + k, 2.0), SR)
    sf.write(root / "ann" / "short.wav", tone(400, 0.6), SR)
    sf.write(root / "ann" / "tiny.wav", tone(400, 0.1), SR)
    (root / "bob" / "broken.ogg").write_bytes(b"OggS but no more")
    return root


# --- augmentation -------------------------------------------------------------------------


def test_gain_and_noise_at_the_requested_snr():
    x = tone(300, 1.0)
    louder = apply_augment(x, len(x), AugmentSpec(gain_db=6.0), seed=0)
    assert rms(louder) / rms(x) == pytest.approx(10 ** (6 / 20), rel=1e-4)
    for color in (0.0, 1.0, 2.0):
        noisy = apply_augment(x, len(x), AugmentSpec(snr_db=10.0, noise_color=color), seed=1)
        assert 20 * np.log10(rms(x) / rms(noisy - x)) == pytest.approx(10.0, abs=0.01)
    white = apply_augment(x, len(x), AugmentSpec(snr_db=0.0, noise_color=0.0), seed=1) - x
    brown = apply_augment(x, len(x), AugmentSpec(snr_db=0.0, noise_color=2.0), seed=1) - x
    tilt = band_energy(brown, 50, 500) / band_energy(brown, 4000, 8000)
    assert tilt > 100 * band_energy(white, 50, 500) / band_energy(white, 4000, 8000)


def test_recorded_noise_from_a_noise_folder(tmp_path):
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", tone(3000, 0.3), SR)  # shorter than the crop: looped
    bank = load_noise_bank([str(tmp_path / "noise")])
    (digest,) = bank.files
    spec = AugmentSpec(snr_db=5.0, noise_file=digest)
    x = tone(300, 1.0)
    added = apply_augment(x, len(x), spec, seed=0, noise=bank) - x
    assert peak_hz(added) == pytest.approx(3000, abs=5)
    assert 20 * np.log10(rms(x) / rms(added)) == pytest.approx(5.0, abs=0.01)
    (tmp_path / "silence").mkdir()
    with pytest.raises(DataError, match="hold no audio files"):
        load_noise_bank([str(tmp_path / "silence")])


def test_band_limiting():
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    low = apply_augment(x, SR, AugmentSpec(lowpass_hz=2000.0), seed=0)
    assert band_energy(low, 5000, 8000) < 1e-3 * band_energy(low, 100, 1500)
    phone = apply_augment(x, SR, AugmentSpec(telephone=True), seed=0)
    assert band_energy(phone, 0, 100) < 1e-3 * band_energy(phone, 500, 3000)
    assert band_energy(phone, 6000, 8000) < 1e-3 * band_energy(phone, 500, 3000)


def test_speed_changes_pitch_and_keeps_the_crop_length():
    spec = AugmentSpec(speed=1.1)
    source = tone(440, 1.2)
    span = round(SR * 1.1)
    out = apply_augment(source[:span], SR, spec, seed=0)
    assert len(out) == SR
    assert peak_hz(out) == pytest.approx(484, abs=3)


def test_reverb_spreads_energy_and_keeps_rms():
    x = np.zeros(SR, dtype=np.float32)
    x[1000:1400] = tone(500, 400 / SR)
    wet = apply_augment(x, SR, AugmentSpec(rt60_s=0.5, drr_db=0.0), seed=0)
    assert rms(wet) == pytest.approx(rms(x), rel=1e-4)
    assert rms(wet[3000:6000]) > 0.05 * rms(wet[1000:1400])  # a decaying tail, not silence
    assert rms(wet[3000:6000]) > rms(wet[9000:12000])


def test_augmentation_is_regenerable_from_its_seed():
    cfg = AugmentConfig(p_gain=1, p_noise=1, p_band=1, p_speed=0, p_reverb=1)
    spec = sample_augment(np.random.default_rng(0), cfg)
    assert spec.gain_db and spec.snr_db is not None and spec.rt60_s > 0
    assert spec.telephone or spec.lowpass_hz > 0
    x = tone(250, 1.0)
    a, b = (apply_augment(x, SR, spec, seed=7) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, apply_augment(x, SR, spec, seed=8))
    assert sample_augment(np.random.default_rng(0), AugmentConfig(enabled=False)) == AugmentSpec()
    assert AugmentSpec.from_dict(spec.to_dict()) == spec
    assert "noise_path" not in dataclasses.replace(spec, noise_path="/x").identity()


# --- sources and crops --------------------------------------------------------------------


def test_folders_are_walked_recursively_with_speakers(folder, tmp_path):
    rows = find_sources([str(folder)])
    assert len(rows) == 7
    by_name = {(r.speaker, r.audio.name) for r in rows}
    assert ("ann/sub", "b.flac") in by_name and ("bob", "a.wav") in by_name
    assert {r.corpus for r in rows} == {"data"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        find_sources([str(tmp_path / "empty")])
    with pytest.raises(DataError, match="no such file"):
        find_sources([str(tmp_path / "missing")])
    (tmp_path / "bad.csv").write_text("file,emotion\nx.wav,anger\n")
    with pytest.raises(DataError, match="unusable manifest"):
        find_sources([str(tmp_path / "bad.csv")])


def test_manifest_rows_keep_their_split_and_labels(folder, tmp_path):
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "corpus", "speaker", "emotion", "split"])
        w.writerow([str(folder / "ann" / "a.wav"), "toy", "toy-ann", "anger", "train"])
        w.writerow([str(folder / "bob" / "a.wav"), "toy", "toy-bob", "sadness", "dev"])
    plan = plan_crops(find_sources([str(manifest)]), label_cfg(crops_per_file=2))
    assert len(plan.crops) == 4
    train, dev = split_crops(plan.crops, dev_fraction=0.0)
    assert {c.info["emotion"] for c in dev} == {"sadness"}
    assert {c.info["speaker"] for c in train} == {"toy-ann"}


def test_crop_plan_is_deterministic_and_skips_bad_files(folder):
    cfg = label_cfg(crops_per_file=3, min_crop_s=1.0, max_crop_s=1.5, crop_step_s=0.25)
    rows = find_sources([str(folder)])
    plan = plan_crops(rows, cfg)
    assert [c.key for c in plan.crops] == [c.key for c in plan_crops(rows, cfg).crops]
    assert sorted(p.rsplit("/", 1)[1] for p, _ in plan.skipped) == ["broken.ogg", "tiny.wav"]
    assert len(plan.crops) == 5 * 3
    for c in plan.crops:
        if c.path.endswith("short.wav"):  # 0.6 s: as long as the grid allows
            assert c.length == 0.5 * SR
        else:
            assert c.length in (SR, 1.25 * SR, 1.5 * SR)
        assert c.offset >= 0 and c.offset + round(c.length * c.augment.speed) <= 2 * SR
    clean = [c for c in plan.crops if c.augment == AugmentSpec()]
    assert len(clean) >= 5  # clean_crops = 1 per file
    other_seed = plan_crops(rows, dataclasses.replace(cfg, seed=1))
    assert {c.key for c in other_seed.crops}.isdisjoint(c.key for c in plan.crops)


def test_crop_key_is_its_identity_only():
    crop = Crop(
        "abc", 100, 16000, AugmentSpec(gain_db=3.0), seed=5, path="/a.wav", info={"speaker": "x"}
    )
    moved = dataclasses.replace(crop, path="/elsewhere/a.wav", info={})
    assert moved.key == crop.key
    assert dataclasses.replace(crop, seed=6).key != crop.key
    assert dataclasses.replace(crop, offset=101).key != crop.key
    assert Crop.from_json(crop.to_json()) == crop and Crop.from_json(crop.to_json()).info


def test_crops_regenerate_exactly_and_notice_changed_files(folder):
    rows = [r for r in find_sources([str(folder)]) if r.audio.name == "a.wav"]
    plan = plan_crops(rows, label_cfg(crops_per_file=2, max_crop_s=1.0))
    audio = CropAudio()
    clean = next(c for c in plan.crops if c.augment == AugmentSpec())
    source, _ = sf.read(clean.path, dtype="float32")
    np.testing.assert_allclose(audio(clean), source[clean.offset : clean.offset + SR], atol=1e-6)
    assert all(len(audio(c)) == c.length for c in plan.crops)
    sf.write(clean.path, tone(999, 2.0), SR)  # the file changes after planning
    with pytest.raises(DataError, match="content changed"):
        CropAudio()(clean)


def test_held_out_split_is_speaker_disjoint():
    crops = [
        Crop(f"f{s}{i}", 0, SR, seed=i, info={"corpus": "c", "speaker": f"s{s}"})
        for s in range(10)
        for i in range(3)
    ]
    train, dev = split_crops(crops, dev_fraction=0.2)
    assert len(dev) == 6 and len(train) == 24
    assert {c.info["speaker"] for c in dev}.isdisjoint(c.info["speaker"] for c in train)
    assert split_crops(crops, 0.2) == (train, dev)  # stable
    one_speaker = [dataclasses.replace(c, info={"speaker": "solo"}) for c in crops]
    train, dev = split_crops(one_speaker, dev_fraction=0.2)
    assert dev and train and {c.file_hash for c in dev}.isdisjoint(c.file_hash for c in train)
