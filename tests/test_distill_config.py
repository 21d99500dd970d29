"""distill configuration: TOML -> typed stage configs, clear errors, and CLI flags that mirror
every config field."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from edgeser.distill.cli import STAGES, build_parser, main, stage_config
from edgeser.distill.config import (
    AugmentConfig,
    ConfigError,
    LabelConfig,
    TrainConfig,
    load_run_config,
)

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_example_config_loads_and_chains_the_stages():
    run = load_run_config(REPO / "configs" / "example.toml")
    run.label.validate()
    run.train.validate()
    run.eval.validate()
    assert run.train.store == run.eval.store == run.label.store
    assert run.eval.checkpoint == str(Path(run.train.out) / "student.pt")
    assert run.label.augment.snr_db_range == [5.0, 30.0]
    text = (REPO / "configs" / "example.toml").read_text()
    chained = {"train": {"store"}, "eval": {"store", "checkpoint"}}  # documented as comments
    for stage, cls in STAGES.items():
        for key in field_paths(cls) - chained.get(stage, set()):
            assert f"\n{key.split('.')[-1]} = " in text, f"example.toml lacks {stage}.{key}"


def test_values_are_typed_and_ints_widen_to_float(tmp_path):
    run = load_run_config(
        write(tmp_path, "[train]\nlr = 1\nepochs = 3\n[label.augment]\np_noise = 0\n")
    )
    assert run.train.lr == 1.0 and isinstance(run.train.lr, float)
    assert run.train.epochs == 3 and run.label.augment.p_noise == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nlearning_rate = 0.1\n", r"train: unknown key\(s\) learning_rate; allowed: "),
        ("[label.augment]\np_nois = 0.1\n", r"label.augment: unknown key\(s\) p_nois"),
        ("[tune]\nx = 1\n", r"config: unknown key\(s\) tune; allowed: eval, label, train"),
        ("[train]\nepochs = 'many'\n", r"train.epochs: expected int"),
        ("[train]\nresume = 1\n", r"train.resume: expected true/false"),
        ("[label]\ndata = 'folder'\n", r"label.data: expected a list"),
        ("[train\n", r"not valid TOML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(write(tmp_path, text))


def test_missing_file_and_required_values():
    with pytest.raises(ConfigError, match="no such config file"):
        load_run_config("/no/such.toml")
    with pytest.raises(ConfigError, match="missing required option"):
        LabelConfig(data=["x"]).validate()
    with pytest.raises(ConfigError, match="min_crop_s <= max_crop_s"):
        LabelConfig(data=["x"], teacher="t", store="s", min_crop_s=3, max_crop_s=2).validate()
    with pytest.raises(ConfigError, match="snr_db_range"):
        LabelConfig(
            data=["x"], teacher="t", store="s", augment=AugmentConfig(snr_db_range=[9.0, 1.0])
        ).validate()


def field_paths(cls: type, prefix: str = "") -> set[str]:
    paths = set()
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            paths |= field_paths(hint, prefix + f.name + ".")
        else:
            paths.add(prefix + f.name)
    return paths


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_config_field_is_a_flag(stage):
    sub = build_parser()._subparsers._group_actions[0].choices[stage]
    dests = {a.dest for a in sub._actions} - {"help", "config", "quiet"}
    assert dests == field_paths(STAGES[stage])


def test_flags_override_the_config_file(tmp_path):
    path = write(tmp_path, '[label]\nstore = "a"\nbatch_size = 4\n[train]\nout = "o"\n')
    args = build_parser().parse_args(
        [
            "label",
            "--config",
            str(path),
            "--batch-size",
            "8",
            "--augment-snr-db-range",
            "1",
            "2",
            "--no-store-embeddings",
            "--data",
            "x",
            "y",
        ]
    )
    cfg = stage_config(args)
    assert (cfg.store, cfg.batch_size, cfg.data) == ("a", 8, ["x", "y"])
    assert cfg.augment.snr_db_range == [1.0, 2.0] and cfg.store_embeddings is False
    train = stage_config(build_parser().parse_args(["train", "--config", str(path)]))
    assert isinstance(train, TrainConfig) and train.store == "a"  # chained from [label]


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    assert main(["run", str(write(tmp_path, "[train]\nbogus = 1\n"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeser-distill: error: train: unknown key(s) bogus")
