"""edgeser.Stream on file and block sources: same readings as score_file, bad blocks survived,
back-pressure dropped and counted, smoothing, callbacks, pacing and stopping."""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from conftest import voice_like

import edgeser
from edgeser.audio import read_audio
from edgeser.contract import SAMPLE_RATE

pytestmark = pytest.mark.usefixtures("use_backend")  # each test on both backends


def _voice_gap_voice(rate: int = SAMPLE_RATE) -> np.ndarray:
    """2 s of voice, 1.5 s of silence, 1.7 s of other voice: voiced and unvoiced windows."""
    silence = np.zeros(round(1.5 * rate), np.float32)
    return np.concatenate([voice_like(2.0, rate), silence, voice_like(1.7, rate, seed=3)])


def _same_readings(a: list[edgeser.Reading], b: list[edgeser.Reading]) -> None:
    """Same windows, same voicing, A/D/V equal within float tolerance."""
    assert [r.voiced for r in a] == [r.voiced for r in b]
    times = [(r.start_s, r.end_s) for r in a], [(r.start_s, r.end_s) for r in b]
    np.testing.assert_allclose(*times, rtol=0, atol=1e-9)
    for x, y in zip(a, b, strict=True):
        if x.voiced:
            assert x.adv == pytest.approx(y.adv, abs=1e-6)
            np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-6)


class StallingSource:
    """A live source that delivers ``first`` blocks 3 ms apart (the worker keeps up), waits
    until ``stalled`` is set (the worker is stuck), then delivers the ``rest`` at once."""

    live = True
    sampling_rate = SAMPLE_RATE

    def __init__(self, first: list[np.ndarray], rest: list[np.ndarray]) -> None:
        self.first, self.rest = first, rest
        self.stalled = threading.Event()
        self.seconds_to_deliver_rest: float | None = None

    def start(self, sink) -> None:
        def deliver() -> None:
            for block in self.first:
                sink.block(block)
                time.sleep(0.003)
            assert self.stalled.wait(timeout=10)
            began = time.monotonic()
            for block in self.rest:
                sink.block(block)
            self.seconds_to_deliver_rest = time.monotonic() - began
            sink.end()

        threading.Thread(target=deliver, daemon=True).start()

    def stop(self) -> None:
        pass


def _slowed(model: edgeser.Model, seconds: float) -> edgeser.Model:
    """The model, with each window's scoring made ``seconds`` slower (a slow CPU)."""
    score = model.score_window

    def slow_score(samples: np.ndarray, start_s: float = 0.0) -> edgeser.Reading:
        time.sleep(seconds)
        return score(samples, start_s)

    model.score_window = slow_score
    return model


def test_predict_score_file_and_stream_agree(tiny_model, write_wav):
    path = write_wav("voice.wav", _voice_gap_voice())
    from_file = tiny_model.score_file(path).windows
    with edgeser.Stream(tiny_model, edgeser.FileSource(path)) as stream:
        streamed = list(stream)
    _same_readings(streamed, from_file)
    assert any(r.voiced for r in streamed) and not all(r.voiced for r in streamed)
    audio = read_audio(path)
    for reading in (r for r in streamed if r.voiced):
        first = round(reading.start_s * SAMPLE_RATE)
        clip = audio[first : first + SAMPLE_RATE]
        assert reading.adv == pytest.approx(tiny_model.predict(clip, SAMPLE_RATE).adv, abs=1e-6)
    assert stream.stats.readings == len(streamed)
    assert stream.stats.voiced == sum(r.voiced for r in streamed)


def test_stream_resamples_44k_stereo_like_score_file(tiny_model, write_wav):
    x = _voice_gap_voice(44_100)
    path = write_wav("stereo44.wav", np.stack([x, 0.5 * x], axis=1), rate=44_100, subtype="FLOAT")
    with edgeser.Stream(tiny_model, edgeser.FileSource(path, block_s=0.037)) as stream:
        streamed = list(stream)
    _same_readings(streamed, tiny_model.score_file(path).windows)


def test_int16_blocks_of_any_size_give_the_file_readings(tiny_model, write_wav):
    pcm = np.round(_voice_gap_voice() * 32767).astype(np.int16)
    path = write_wav("voice16.wav", pcm)
    rng = np.random.default_rng(0)
    blocks = np.split(pcm, np.sort(rng.choice(pcm.size, size=60, replace=False)))
    with edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE)) as stream:
        streamed = list(stream)
    _same_readings(streamed, tiny_model.score_file(path).windows)


def test_bad_blocks_are_counted_logged_and_skipped(tiny_model, caplog):
    good = [voice_like(0.25, seed=i) for i in range(12)]  # 0.25 s blocks, 1 s window
    bad = [
        np.full(4000, np.nan, np.float32),
        np.zeros((4, 4, 4), np.float32),
        np.ones(4000, np.complex64),
        "not audio",
        None,
        np.tile(good[0][:, None], (1, 8)),
        np.zeros(0, np.float32),
        np.full(4000, np.inf, np.float32),
    ]
    blocks = [*good[:4], bad[0], *good[4:8], *bad[1:], *good[8:]]
    stream = edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE))
    with caplog.at_level(logging.WARNING, logger="edgeser.stream"), stream:
        readings = list(stream)
    assert stream.stats.bad_blocks == len(bad)
    assert stream.error is None
    assert "skipped bad audio block" in caplog.text
    # each bad block breaks the signal: windows restart after it and never span it
    assert [r.start_s for r in readings] == [0.0, 1.25, 3.0]


def test_bad_block_restarts_the_window_at_its_source_time(tiny_model):
    blocks = [voice_like(0.25, seed=i) for i in range(10)]
    blocks[4] = np.full(4000, np.nan, np.float32)
    with edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE)) as stream:
        starts = [r.start_s for r in stream]
    # 0..1 s before the bad block (frames 16000..20000), then windows from 1.25 s on
    assert starts == [0.0, 1.25, 1.5]
    assert stream.stats.bad_blocks == 1


def test_scoring_behind_a_live_source_skips_stale_windows(tiny_model, tiny_model_path, write_wav):
    path = write_wav("voice.wav", voice_like(2.0))
    model = _slowed(edgeser.load(tiny_model_path), 0.12)  # hop 0.05 s, 0.12 s per window
    source = edgeser.FileSource(path, realtime=True)
    with edgeser.Stream(model, source, window=0.5, hop=0.05) as stream:
        readings = list(stream)
    windows = tiny_model.score_file(path, window=0.5, hop=0.05).windows
    expected = {round(r.start_s, 6): r for r in windows}
    assert stream.stats.skipped_windows > 0 and stream.stats.dropped_blocks == 0
    assert len(readings) + stream.stats.skipped_windows == len(expected)
    for reading in readings:  # the windows that were scored are whole and correct
        assert reading.adv == expected[round(reading.start_s, 6)].adv


def test_stalled_worker_drops_blocks_without_holding_up_the_source(tiny_model):
    signal = voice_like(3.0)
    blocks = np.split(signal, 120)  # 25 ms blocks; the window is 1 s, the hop 0.25 s
    source = StallingSource(blocks[:40], blocks[40:])

    def stall(reading: edgeser.Reading) -> None:
        if not source.stalled.is_set():
            source.stalled.set()
            time.sleep(0.5)  # the worker is stuck in the callback

    readings: list[edgeser.Reading] = []
    stream = edgeser.Stream(
        tiny_model, source, max_pending=8, callback=lambda r: (readings.append(r), stall(r))
    )
    with stream:
        assert stream.join(timeout=10)
    assert source.stalled.is_set() and stream.stats.callback_errors == 0
    assert source.seconds_to_deliver_rest < 0.2  # the source never waited for the worker
    assert stream.stats.blocks == 120
    assert stream.stats.dropped_blocks >= 80 - 8
    for reading in readings:  # no window spans the gap left by the dropped blocks
        first = round(reading.start_s * SAMPLE_RATE)
        clip = signal[first : first + SAMPLE_RATE]
        assert reading.adv == tiny_model.predict(clip, SAMPLE_RATE).adv


def test_non_live_source_waits_instead_of_dropping(tiny_model):
    blocks = [voice_like(0.025, seed=i) for i in range(200)]
    stream = edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE), max_pending=2)
    with stream:
        readings = list(stream)
    assert stream.stats.dropped_blocks == 0
    assert len(readings) == round((5.0 - 1.0) / 0.25) + 1


def test_smoothing_is_an_ema_over_voiced_readings(tiny_model, write_wav):
    path = write_wav("voice.wav", _voice_gap_voice())
    raw = list(edgeser.Stream(tiny_model, edgeser.FileSource(path)))
    smooth = list(edgeser.Stream(tiny_model, edgeser.FileSource(path), smoothing=0.3))
    state = None
    for r, s in zip(raw, smooth, strict=True):
        assert s.voiced == r.voiced
        if r.voiced:
            pairs = zip(r.adv, state or r.adv, strict=True)
            state = tuple(0.3 * new + 0.7 * old for new, old in pairs)
            assert s.adv == pytest.approx(state)
    assert raw[1].adv != smooth[1].adv


@pytest.mark.parametrize("kwargs", [{"smoothing": 0.0}, {"smoothing": 1.5}, {"max_pending": 0}])
def test_bad_stream_settings(tiny_model, kwargs):
    with pytest.raises(edgeser.ConfigError):
        edgeser.Stream(tiny_model, edgeser.BlockSource([], SAMPLE_RATE), **kwargs)


@pytest.mark.parametrize("block_s", [float("nan"), 0.0, -1.0, 5.0])
def test_bad_block_lengths_are_config_errors_from_the_sources(write_wav, block_s):
    """``block_s`` has the range ``edgeser.limits`` gives it for the flag and the TOML key,
    checked by the sources themselves (a NaN was a bare ValueError from round())."""
    path = write_wav("short.wav", voice_like(1.0))
    with pytest.raises(edgeser.ConfigError, match="block_s"):
        edgeser.FileSource(path, block_s=block_s)
    with pytest.raises(edgeser.ConfigError, match="block_s"):
        edgeser.DeviceSource(block_s=block_s)


def test_a_device_rate_no_stream_can_take_is_a_device_error_naming_it(monkeypatch):
    """PortAudio's default rate of an odd device (0 Hz, 1 MHz) fails where the device is
    opened, as a DeviceError, not later as an AudioError of the Stream's resampler."""
    from edgeser import sources

    for rate in (0, 1_000_000):
        monkeypatch.setattr(sources, "_find_in_child", lambda device, r=rate: (3, "odd mic", r))
        with pytest.raises(edgeser.DeviceError, match=f"'odd mic'.*{rate} Hz"):
            edgeser.DeviceSource("odd")


def test_stream_settings_have_the_ranges_of_their_flags(tiny_model):
    with pytest.raises(edgeser.ConfigError, match="max_pending must be a whole number"):
        edgeser.Stream(tiny_model, edgeser.BlockSource([], SAMPLE_RATE), max_pending=10**6)


def test_callback_gets_the_readings_and_its_errors_do_not_stop_the_stream(tiny_model, caplog):
    got: list[edgeser.Reading] = []

    def callback(reading: edgeser.Reading) -> None:
        got.append(reading)
        if len(got) == 2:
            raise RuntimeError("a bug in the user's callback")

    blocks = [voice_like(3.0)]
    stream = edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE), callback=callback)
    with caplog.at_level(logging.ERROR, logger="edgeser.stream"), stream:
        assert stream.join(timeout=10)
    assert len(got) == 9 and stream.stats.callback_errors == 1
    assert "stream callback failed" in caplog.text
    assert list(stream) == []  # with a callback, the iterator only waits for the end


def test_source_breaking_off_ends_the_stream_with_its_error(tiny_model, write_wav):
    flac = write_wav("long.flac", voice_like(6.0)).read_bytes()
    truncated = write_wav("cut.wav", voice_like(0.3)).with_suffix(".flac")
    truncated.write_bytes(flac[: len(flac) // 2])
    readings = []
    with pytest.raises(edgeser.AudioFileError, match="truncated or corrupt"):
        for reading in edgeser.Stream(tiny_model, edgeser.FileSource(truncated)):
            readings.append(reading)
    assert readings  # what was decoded before the break was scored


def test_realtime_file_is_paced_and_stop_ends_it(tiny_model, write_wav):
    path = write_wav("voice.wav", voice_like(10.0))
    began = time.monotonic()
    with edgeser.Stream(tiny_model, edgeser.FileSource(path, realtime=True)) as stream:
        for reading in stream:
            assert time.monotonic() - began >= reading.end_s - 0.06  # not ahead of real time
            if reading.end_s >= 1.5:
                break
    assert time.monotonic() - began < 3.0  # stopped well before the file's 10 s
    assert stream.join(timeout=1)  # the worker has ended
    assert stream.stats.readings <= 4  # nothing was scored after stop()


def test_a_slow_iterating_consumer_gets_current_readings_and_the_rest_are_counted(tiny_model):
    blocks = np.split(voice_like(4.0), 80)  # 50 ms blocks at real-time pace; hop 0.25 s
    source = edgeser.BlockSource(blocks, SAMPLE_RATE, realtime=True)
    stream = edgeser.Stream(tiny_model, source, max_readings=2)
    began = time.monotonic()
    lags = []
    with stream:
        for reading in stream:
            lags.append(time.monotonic() - began - reading.end_s)
            time.sleep(0.6)  # the consumer takes longer than a hop per reading
    assert stream.stats.dropped_readings > 0
    assert len(lags) + stream.stats.dropped_readings == stream.stats.readings
    # at most 2 readings wait: none is older than ~2 consumer turns (unbounded: 3.8 s at the end)
    assert max(lags) < 2.0
    assert "dropped readings" in stream.stats.summary()


@pytest.mark.parametrize("ending", [SystemExit, KeyboardInterrupt, GeneratorExit])
@pytest.mark.timeout(30)
def test_any_ending_of_the_block_iterable_ends_the_stream(tiny_model, ending):
    def blocks():
        yield from (voice_like(0.25, seed=i) for i in range(6))
        raise ending("the block source gave up")

    stream = edgeser.Stream(tiny_model, edgeser.BlockSource(blocks(), SAMPLE_RATE))
    got: list[object] = []

    def consume() -> None:
        try:
            got.extend(stream)
        except BaseException as exc:  # the iterator re-raises what ended the source
            got.append(exc)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=10)
    waiting = consumer.is_alive()
    stream.stop()  # (which, before the fix, was the only way to release the consumer)
    assert not waiting, "the consumer still waits for readings"
    assert isinstance(got[-1], ending)
    assert [r.end_s for r in got[:-1]] == [1.0, 1.25, 1.5]  # what came before is delivered


@pytest.mark.parametrize("kwargs", [{"max_readings": 0}])
def test_bad_readings_bound(tiny_model, kwargs):
    with pytest.raises(edgeser.ConfigError, match="max_readings"):
        edgeser.Stream(tiny_model, edgeser.BlockSource([], SAMPLE_RATE), **kwargs)


def test_a_block_buffer_reused_by_the_source_does_not_change_the_readings(tiny_model, write_wav):
    """soundfile's ``blocks(out=...)`` refills one buffer: the stream must copy what it queues."""
    path = write_wav("voice.wav", _voice_gap_voice())
    blocks = sf.blocks(path, 800, dtype="float32")
    fresh = list(edgeser.Stream(tiny_model, edgeser.BlockSource(blocks, SAMPLE_RATE)))
    buffer = np.empty(800, np.float32)
    reused = sf.blocks(path, dtype="float32", out=buffer)
    stream = edgeser.Stream(tiny_model, edgeser.BlockSource(reused, SAMPLE_RATE), max_pending=64)
    _same_readings(list(stream), fresh)
    _same_readings(fresh, tiny_model.score_file(path).windows)


def test_one_long_block_is_scored_in_memory_bounded_by_the_window(tiny_model):
    """A 20-minute block: the stream holds a few pieces of it, not a copy of every window
    (300 MB for this model before the fix; 970 MB for a 60-minute block and the default model)."""
    block = np.tile(voice_like(10.0), 6 * 20)
    expected = round((block.size / SAMPLE_RATE - 1.0) / 0.25) + 1
    stream = edgeser.Stream(tiny_model, edgeser.BlockSource([block], SAMPLE_RATE), vad=None)
    tracemalloc.start()
    try:
        readings = sum(1 for _ in stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert readings == expected
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB for a 73 MiB block"


def test_long_blocks_give_the_readings_of_short_ones(tiny_model, write_wav):
    """Pieces of a long block are one signal: the same readings as the file in 50 ms blocks,
    for a stereo 44.1 kHz block that the stream resamples piece by piece."""
    x = _voice_gap_voice(44_100)
    stereo = np.stack([x, 0.5 * x], axis=1)
    path = write_wav("stereo44.wav", stereo, rate=44_100, subtype="FLOAT")
    with edgeser.Stream(tiny_model, edgeser.BlockSource([stereo], 44_100)) as stream:
        streamed = list(stream)
    _same_readings(streamed, tiny_model.score_file(path).windows)
    assert stream.stats.blocks == 1 and stream.stats.bad_blocks == 0
