"""Degradations (edgeser.distill.degrade) do what they say, measured on the signal: SNRs, the
synthetic room's RT60 (Schroeder integration) and direct-to-reverberant ratio, the telephone
band limit, the mu-law round trip, codecs, gain; and they are deterministic given their rng."""

import numpy as np
import pytest
from edgeser.distill import degrade
from edgeser.distill.augment import AugmentSpec, SpeechBank, apply_augment, sample_augment
from edgeser.distill.config import AugmentConfig, ConfigError

SR = 16_000


def voiced(seconds: float = 1.0, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like harmonic signal with a slow amplitude envelope and a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return 0.1 * x * envelope + noise


def snr_db(clean: np.ndarray, degraded: np.ndarray) -> float:
    added = degraded - clean
    return 10 * np.log10(np.mean(clean**2) / np.mean(added**2))


@pytest.mark.parametrize("target", [0.0, 10.0, 15.0])
def test_pink_noise_is_at_its_snr_and_pink(target):
    x = voiced()
    y = degrade.pink_noise(x, target, np.random.default_rng(3))
    assert snr_db(x, y) == pytest.approx(target, abs=0.01)
    noise = y - x
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / SR)
    band = (freqs > 50) & (freqs < 7000)
    slope = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)  # power ~ 1/f: -3 dB per octave


def test_babble_is_other_talkers_at_its_snr():
    x = voiced()
    talkers = [voiced(0.7, f0, seed) for seed, f0 in enumerate((110.0, 180.0, 230.0, 95.0))]
    y = degrade.babble(x, talkers, 5.0, np.random.default_rng(0))
    assert snr_db(x, y) == pytest.approx(5.0, abs=0.01)
    with pytest.raises(ConfigError, match="talker"):
        degrade.babble(x, [], 5.0, np.random.default_rng(0))
    bank = SpeechBank(talkers, ["a", "b", "b", "c"])
    drawn = bank.talkers(20, np.random.default_rng(1), speaker="b")
    assert all(any(d is t for t in (talkers[0], talkers[3])) for d in drawn)
    with pytest.raises(ConfigError, match="no speaker other than"):
        SpeechBank(talkers[:1], ["a"]).talkers(3, np.random.default_rng(0), speaker="a")


def schroeder_rt60(rir: np.ndarray) -> float:
    """RT60 from the slope of the backward-integrated energy decay between -5 and -25 dB."""
    edc = np.cumsum(rir[::-1] ** 2)[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    t = np.arange(len(rir)) / SR
    fit = (edc_db <= -5) & (edc_db >= -25)
    slope = np.polyfit(t[fit], edc_db[fit], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.2, 0.7, 1.0])
def test_synthetic_room_has_its_rt60_and_direct_to_reverberant_ratio(rt60):
    rir = degrade.synthetic_rir(rt60, 3.0, np.random.default_rng(0))
    assert schroeder_rt60(rir[1:]) == pytest.approx(rt60, rel=0.05)
    assert rir[0] == 1.0
    assert 10 * np.log10(1.0 / np.sum(rir[1:] ** 2)) == pytest.approx(3.0, abs=0.01)
    x = voiced()
    wet = degrade.reverberate(x, rt60, 3.0, np.random.default_rng(0))
    assert degrade.rms(wet) == pytest.approx(degrade.rms(x), rel=1e-6)


def test_far_field_is_reverberant_and_noisy():
    x = voiced()
    rng = np.random.default_rng
    far = degrade.far_field(x, 0.7, -3.0, 10.0, rng(0))
    wet = degrade.reverberate(x, 0.7, -3.0, rng(0))
    # the same generator continues into the noise: what is added to the room is at the SNR
    assert snr_db(wet, far) == pytest.approx(10.0, abs=0.01)


def band_share_db(x: np.ndarray, low_hz: float) -> float:
    """Energy above ``low_hz`` relative to the whole signal's."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return 10 * np.log10(power[freqs > low_hz].sum() / power.sum())


@pytest.mark.parametrize("companding", [False, True])
def test_telephone_keeps_nothing_above_4_khz(companding):
    white = 0.1 * np.random.default_rng(0).standard_normal(SR)
    assert band_share_db(white, 4200) > -4  # about half of white noise lies there
    phone = degrade.telephone(white, companding=companding)
    assert len(phone) == len(white)
    assert band_share_db(phone, 4200) < -50
    assert band_share_db(phone, 3800) > -40  # the band below it is still there


def test_mu_law_round_trip_is_8_bit_companding():
    x = np.concatenate([np.geomspace(0.01, 1.0, 500), -np.geomspace(0.01, 1.0, 500)])
    y = degrade.mu_law(x)
    assert np.max(np.abs(y - x) / np.abs(x)) < 0.035  # ~2-3 % at every level: log steps
    np.testing.assert_allclose(degrade.mu_law(y), y, atol=1e-12)  # already on the code grid
    codes = np.log1p(degrade.MU * np.abs(degrade.mu_law(np.linspace(-1, 1, 20_001))))
    assert len(np.unique(np.round(codes, 9))) == degrade.MU_LAW_STEPS + 1  # 128 magnitudes
    np.testing.assert_allclose(degrade.mu_law(np.array([2.0, -3.0, 0.0])), [1, -1, 0], atol=1e-12)


@pytest.mark.parametrize("name", sorted(degrade.CODECS))
def test_codecs_are_lossy_but_keep_the_speech(name):
    x = voiced()
    y = degrade.codec(x, name, 0.8)
    assert y.shape == x.shape
    error = degrade.rms(y - x) / degrade.rms(x)
    assert 1e-3 < error < 0.5
    assert np.corrcoef(x, y)[0, 1] > 0.9


@pytest.mark.parametrize("name", ["opus", "vorbis", "mp3"])
@pytest.mark.parametrize("level", [0.0, 1.0])
def test_codecs_take_every_level_of_the_range_ends_included(name, level):
    """The sampled levels reach 0 and 1 (rounded to 3 decimals): libsndfile refuses MP3 at
    exactly 1.0, which once ended a training run mid-way."""
    x = voiced()
    y = degrade.codec(x, name, level)
    assert y.shape == x.shape and np.corrcoef(x, y)[0, 1] > 0.8


def test_codec_rejects_bad_parameters():
    with pytest.raises(ConfigError, match="unknown codec 'aac'"):
        degrade.codec(voiced(), "aac")
    with pytest.raises(ConfigError, match="compression level"):
        degrade.codec(voiced(), "opus", 1.5)


@pytest.mark.parametrize("db", [-40.0, -30.0, 0.0, 10.0])
def test_gain(db):
    x = voiced()
    assert degrade.rms(degrade.gain(x, db)) / degrade.rms(x) == pytest.approx(10 ** (db / 20))


def test_pcm16_clips_and_quantises():
    x = np.array([0.5, 1.5, -2.0, 1e-6])
    y = degrade.pcm16(x)
    assert y[1] == 1.0 and y[2] == -1.0 and y[3] == 0.0
    assert abs(y[0] - 0.5) <= 0.5 / 32767
    quiet = degrade.pcm16(degrade.gain(voiced(), -30.0))
    assert np.unique(np.round(quiet * 32767)).size < 400  # a few hundred codes left


DEGRADATIONS = {
    "pink": lambda x, rng: degrade.pink_noise(x, 5.0, rng),
    "babble": lambda x, rng: degrade.babble(x, [voiced(0.5, 200.0), voiced(0.3, 90.0)], 5, rng),
    "reverb": lambda x, rng: degrade.reverberate(x, 0.5, 0.0, rng),
    "far": lambda x, rng: degrade.far_field(x, 0.5, -3.0, 10.0, rng),
}


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_degradations_are_deterministic_given_the_rng(name):
    x, apply = voiced(0.5), DEGRADATIONS[name]
    a, b = (apply(x, np.random.default_rng(11)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, apply(x, np.random.default_rng(12)))


def test_new_augmentations_are_drawn_and_applied_deterministically():
    cfg = AugmentConfig(p_far=1.0, p_babble=1.0, p_band=1.0, p_telephone=1.0, p_mu_law=1.0,
                        p_codec=1.0, codecs=["vorbis"], p_speed=0.0, p_gain=0.0)  # fmt: skip
    bank = SpeechBank([voiced(0.6, f, i) for i, f in enumerate((100.0, 150.0, 210.0))],
                      ["s1", "s2", "s3"])  # fmt: skip
    spec = sample_augment(np.random.default_rng(0), cfg, speech=bank)
    assert spec.telephone and spec.mu_law and spec.codec == "vorbis"
    assert spec.drr_db <= 0.0 and spec.snr_db is not None and spec.noise_color == degrade.PINK
    assert 3 <= spec.babble_talkers <= 8 and 0.0 <= spec.babble_snr_db <= 15.0
    x = voiced().astype(np.float32)
    a, b = (apply_augment(x, len(x), spec, seed=5, speech=bank, speaker="s1") for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert band_share_db(a.astype(np.float64), 4200) < -40  # telephone after the babble
    with pytest.raises(ConfigError, match="SpeechBank"):
        sample_augment(np.random.default_rng(0), cfg)
    with pytest.raises(ConfigError, match="SpeechBank"):
        apply_augment(x, len(x), AugmentSpec(babble_snr_db=5.0, babble_talkers=3), seed=0)
