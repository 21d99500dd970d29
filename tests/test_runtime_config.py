"""RuntimeConfig: the runtime's settings from TOML, typed and checked."""

from __future__ import annotations

import pytest
from conftest import REPO

from edgeser import ConfigError, EnergyVad
from edgeser.config import RuntimeConfig


def test_example_config_loads_and_spells_out_the_defaults():
    assert RuntimeConfig.from_toml(REPO / "configs" / "runtime.toml") == RuntimeConfig()


def test_values_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "m.onnx"\nthreads = 2\nwindow_s = 2\ndevice = 3\nsmoothing = 0.5\n')
    config = RuntimeConfig.from_toml(path)
    assert (config.model, config.threads, config.window_s, config.device) == ("m.onnx", 2, 2, 3)
    assert config.smoothing == 0.5 and config.hop_s is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads = 0\n", "threads must be a whole number from 1 to 256, got 0"),
        ("threads = 1.5\n", "threads must be int"),
        ("vad = 1\n", "vad must be bool"),
        ("window_s = true\n", "window_s must be float or None"),
        ("block_s = -1.0\n", "block_s must be in [0.001, 1] s, got -1.0"),
        ("window = 3.0\n", "unknown key(s) window; known: block_s"),
        ("threads = \n", "not valid TOML"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        RuntimeConfig.from_toml(path)
    assert message in str(caught.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"absent\.toml: no such config file"):
        RuntimeConfig.from_toml(tmp_path / "absent.toml")


def test_vad_settings():
    assert RuntimeConfig(vad=False).voice_gate() is None
    assert RuntimeConfig(vad_threshold_db=-50.0).voice_gate() == EnergyVad(threshold_db=-50.0)
    with pytest.raises(ConfigError, match="min_voiced"):
        RuntimeConfig(vad_min_voiced=0.0).voice_gate()


def test_flags_left_out_do_not_override():
    config = RuntimeConfig(threads=2).updated({"threads": None, "hop_s": 0.5})
    assert (config.threads, config.hop_s) == (2, 0.5)


def test_reconnect_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("reconnect = true\n")
    assert RuntimeConfig.from_toml(path).reconnect is True
    path.write_text('reconnect = "yes"\n')
    with pytest.raises(ConfigError, match="reconnect must be bool"):
        RuntimeConfig.from_toml(path)
