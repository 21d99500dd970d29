"""Categorical emotions: the optional ``categories`` output, its contract, and every surface
that carries it (``Reading``, aggregates, csv / jsonl / table rows, ``info``, live lines).

Real models in real sessions of both backends: the bundled model with a seeded random
Softmax(embedding @ W + b) head (``categorical_model_path``), the tiny test model with one,
the bundled model as it is (with its fitted head), and the bundled model without its head
(``headless_model_path``), which must behave as models did before heads.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import onnx
import pytest
from conftest import (
    CATEGORY_LABELS,
    REPO,
    SPEECH_WAV,
    add_category_head,
    tiny_model_info,
    voice_like,
)

import edgeser
from edgeser.cli import main
from edgeser.contract import (
    META_CATEGORIES,
    OUTPUT_CATEGORIES,
    check_categories_output,
    parse_categories,
    parse_metadata,
)
from edgeser.display import CSV_HEADER, bars_line
from edgeser.errors import ModelError
from edgeser.readings import Reading, aggregate, scored
from edgeser.sources import FileSource
from edgeser.stream import Stream

pytestmark = pytest.mark.usefixtures("use_backend")  # each test on both backends

SPEECH = "examples/speech.wav"  # as a user types it, from the repository root
# `edgeser score` of the bundled model (onnxruntime, x86): with or without its head, the csv
# without --categories has the columns it had before categorical heads existed.
TODAY_CSV = """\
file,start_s,end_s,arousal,dominance,valence
examples/speech.wav,0.000,7.066,0.6392,0.6668,0.5598
"""
TODAY_CSV_PER_WINDOW = """\
file,start_s,end_s,arousal,dominance,valence
examples/speech.wav,0.000,3.000,0.6914,0.7056,0.5836
examples/speech.wav,1.000,4.000,0.7084,0.7017,0.5305
examples/speech.wav,2.000,5.000,0.6578,0.6366,0.5380
examples/speech.wav,3.000,6.000,0.6638,0.6716,0.5401
examples/speech.wav,4.000,7.000,0.5601,0.6461,0.5864
examples/speech.wav,4.066,7.066,0.5540,0.6393,0.5803
"""
TODAY_JSON_KEYS = ["file", "start_s", "end_s", "arousal", "dominance", "valence", "voiced"]


@pytest.fixture
def in_repo(monkeypatch) -> None:
    """Run from the repository root, so that ``examples/speech.wav`` is the file column."""
    monkeypatch.chdir(REPO)


@pytest.fixture
def gap_wav(write_wav):
    """Speech, 4 s of digital silence (unvoiced windows), speech: a file whose aggregate
    leaves windows out."""
    silence = np.zeros(4 * 16_000, dtype=np.float32)
    return write_wav("gap.wav", np.concatenate([voice_like(3.5), silence, voice_like(3.5, seed=1)]))


def score(capsys, *args: str) -> tuple[int, str, str]:
    """``edgeser score ARGS``: exit code, stdout, stderr."""
    code = main(["score", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- the contract ---------------------------------------------------------------------------


def test_metadata_declares_the_labels_as_a_json_list_and_parses_back():
    info = tiny_model_info()
    assert META_CATEGORIES not in info.to_metadata()  # a model without the head: as before
    meta = {**info.to_metadata(), META_CATEGORIES: json.dumps(list(CATEGORY_LABELS))}
    parsed = parse_metadata(meta)
    assert parsed.categories == CATEGORY_LABELS
    assert json.loads(parsed.to_metadata()[META_CATEGORIES]) == list(CATEGORY_LABELS)
    assert parse_metadata(info.to_metadata()).categories == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("anger,sadness", "is not JSON"),
        ('"anger"', "not a JSON list of names"),
        ('["anger", 3]', "not a JSON list of names"),
        ('["anger"]', "names 1 categories, not at least 2"),
        ('["anger", "anger"]', "not unique and non-empty"),
        ('["anger", " "]', "not unique and non-empty"),
        ('["anger", "valence"]', r"reserved column name\(s\) \['valence'\]"),
        ('["emotion", "anger"]', "reserved column name"),
    ],
)
def test_malformed_labels_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_categories(text)


@pytest.mark.parametrize(
    ("labels", "output", "message"),
    [
        (CATEGORY_LABELS, None, "names 4 categories but there is no output 'categories'"),
        ((), ("tensor(float)", ["batch", 4]), "has no labels"),
        (CATEGORY_LABELS, ("tensor(double)", ["batch", 4]), "tensor.double. .* not float32"),
        (CATEGORY_LABELS, ("tensor(float)", ["batch", 1, 4]), "not float32 \\[batch, K\\]"),
        (CATEGORY_LABELS, ("tensor(float)", ["batch", 3]), "has 3 values but .* names 4"),
    ],
)
def test_an_output_that_does_not_match_its_labels_is_refused(labels, output, message):
    with pytest.raises(ValueError, match=message):
        check_categories_output(labels, output)


def test_a_matching_or_absent_output_passes():
    check_categories_output((), None)
    check_categories_output(CATEGORY_LABELS, ("tensor(float)", ["batch", 4]))
    check_categories_output(CATEGORY_LABELS, ("tensor(float)", ["batch", "k"]))  # named K


def _tiny_with_head(contract_model_factory, name: str, **kwargs):
    """The tiny model (8-d embedding) with a categorical head, as an onnx ModelProto."""
    return add_category_head(onnx.load(str(contract_model_factory(name))), **kwargs)


def _as_double(model):
    """The head's output cast to float64 (a dtype the contract refuses)."""
    from onnx import TensorProto, helper

    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    softmax.output[0] = "float_categories"
    model.graph.node.append(
        helper.make_node("Cast", ["float_categories"], [OUTPUT_CATEGORIES], to=TensorProto.DOUBLE)
    )
    model.graph.output[-1].type.tensor_type.elem_type = TensorProto.DOUBLE
    return model


def _set_meta(model, key: str, value: str | None):
    """``model`` with one metadata key set (None: removed)."""
    props = {p.key: p.value for p in model.metadata_props if p.key != key}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props if value is None else {**props, key: value})
    return model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: _set_meta(m, META_CATEGORIES, None), "output 'categories' has no labels"),
        (
            lambda m: _set_meta(m, META_CATEGORIES, '["a", "b", "c"]'),
            "has 4 values but edgeser.categories names 3",
        ),
        (_as_double, r"is tensor\(double\)"),
        (lambda m: _set_meta(m, META_CATEGORIES, '["a", "a", "b", "c"]'), "not unique"),
    ],
)
def test_load_refuses_a_head_that_breaks_the_contract(
    change, message, contract_model_factory, tmp_path, backend
):
    path = tmp_path / "bad.onnx"
    onnx.save(change(_tiny_with_head(contract_model_factory, "h.onnx")), str(path))
    with pytest.raises(ModelError, match=f"bad.onnx: not an edgeser model: .*{message}"):
        edgeser.load(path, backend=backend)


def test_load_refuses_labels_without_an_output(contract_model_factory, backend):
    meta = {**tiny_model_info().to_metadata(), META_CATEGORIES: json.dumps(CATEGORY_LABELS)}
    path = contract_model_factory("labels_only.onnx", metadata=meta)
    with pytest.raises(ModelError, match=r"labels_only\.onnx: .* no output 'categories'"):
        edgeser.load(path, backend=backend)


def test_load_refuses_a_head_of_logits(contract_model_factory, tmp_path, backend):
    """Logits (no Softmax) are not probabilities: the load-time test tone finds out."""
    path = tmp_path / "logits.onnx"
    model = _tiny_with_head(contract_model_factory, "l.onnx", seed=3, softmax=False)
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=r"logits\.onnx: 'categories' on a test tone are not prob"):
        edgeser.load(path, backend=backend)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([0.2, 0.2, 0.1, 0.1], "sum to 0.6, not 1"),
        ([1.5, -0.5, 0.0, 0.0], "values from -0.5 to 1.5, not in \\[0, 1\\]"),
        ([np.nan, 0.5, 0.25, 0.25], "NaN or infinite"),
    ],
)
def test_scoring_refuses_outputs_that_are_not_probabilities_naming_the_graph(row, message):
    with pytest.raises(ModelError, match=message) as error:
        scored("m.onnx", 0.0, 3.0, np.full(3, 0.5), None, np.array(row), CATEGORY_LABELS)
    assert str(error.value).startswith("m.onnx gave ")
    assert "the window 0.000-3.000 s" in str(error.value)


def test_scoring_refuses_another_number_of_probabilities_than_labels():
    with pytest.raises(ModelError, match=r"m\.onnx gave 3 categories for the window .* not one"):
        scored("m.onnx", 0.0, 3.0, np.full(3, 0.5), None, np.full(3, 1 / 3), CATEGORY_LABELS)


def test_probabilities_within_the_tolerance_pass():
    reading = scored(
        "m.onnx", 0.0, 3.0, np.full(3, 0.5), None, np.array([0.5, 0.5, 0.0, 0.003]), CATEGORY_LABELS
    )
    assert reading.emotion == "anger"  # a tie goes to the first label


# -- readings and aggregates ------------------------------------------------------------------


def test_predict_gives_probabilities_in_label_order_and_the_top_label(
    categorical_model_path, backend
):
    model = edgeser.load(categorical_model_path, backend=backend)
    bundled = edgeser.load(backend=backend)
    assert model.categories == CATEGORY_LABELS
    clip = voice_like(3.0)
    reading = model.predict(clip, 16_000)
    assert list(reading.categories) == list(CATEGORY_LABELS)
    values = np.array(list(reading.categories.values()))
    assert ((values >= 0) & (values <= 1)).all() and abs(values.sum() - 1) < 1e-5
    assert reading.emotion == CATEGORY_LABELS[int(values.argmax())]
    assert reading.adv == bundled.predict(clip, 16_000).adv  # the head leaves A/D/V alone


def test_the_backends_agree_on_the_categories(categorical_model_path):
    scores = [
        edgeser.load(categorical_model_path, backend=b).score_file(SPEECH_WAV)
        for b in ("onnxruntime", "numpy")
    ]
    rows = [[list(w.categories.values()) for w in s.windows] for s in scores]
    np.testing.assert_allclose(rows[1], rows[0], atol=1e-5, rtol=0)
    assert [w.emotion for w in scores[0].windows] == [w.emotion for w in scores[1].windows]


def test_a_files_aggregate_is_the_mean_of_its_voiced_windows(
    categorical_model_path, gap_wav, backend
):
    result = edgeser.load(categorical_model_path, backend=backend).score_file(gap_wav)
    voiced = [w for w in result.windows if w.voiced]
    unvoiced = [w for w in result.windows if not w.voiced]
    assert voiced and unvoiced
    assert all(w.categories is None and w.emotion is None for w in unvoiced)
    mean = np.mean([list(w.categories.values()) for w in voiced], axis=0)
    np.testing.assert_allclose(list(result.aggregate.categories.values()), mean, rtol=1e-12)
    assert result.aggregate.emotion == CATEGORY_LABELS[int(mean.argmax())]


def test_predict_on_a_long_clip_gives_the_mean_of_its_windows(
    categorical_model_path, backend, write_wav
):
    """A clip longer than ``WHOLE_CLIP_WINDOWS`` windows is scored window by window, and its
    categories are those of ``score_file`` without a gate: the mean over the windows."""
    model = edgeser.load(categorical_model_path, backend=backend)
    reading = model.predict(voice_like(14.0), 16_000)
    result = model.score_file(write_wav("long.wav", voice_like(14.0), subtype="FLOAT"), vad=None)
    expected = np.mean([list(w.categories.values()) for w in result.windows], axis=0)
    np.testing.assert_allclose(list(reading.categories.values()), expected, rtol=1e-6)
    assert reading.emotion == result.aggregate.emotion


def test_the_aggregate_emotion_is_the_top_of_the_mean_not_a_majority_vote():
    def reading(a: float) -> Reading:
        return Reading(0, 1, 0.5, 0.5, 0.5, categories={"anger": a, "sadness": 1 - a})

    windows = [reading(0.55), reading(0.55), reading(0.0), Reading.unvoiced(1, 2)]
    assert [w.emotion for w in windows[:3]] == ["anger", "anger", "sadness"]
    mean = aggregate(windows, 0.0, 2.0)
    assert mean.categories == pytest.approx({"anger": 1.1 / 3, "sadness": 1.9 / 3})
    assert mean.emotion == "sadness"
    assert aggregate([Reading.unvoiced(0, 1)], 0.0, 1.0).categories is None


def test_to_dict_has_emotion_and_categories_for_a_head_model_only(
    categorical_model_path, headless_model_path
):
    reading = edgeser.load(categorical_model_path).predict(voice_like(3.0), 16_000)
    row = reading.to_dict()
    assert row["emotion"] == reading.emotion and row["categories"] == reading.categories
    assert json.loads(json.dumps(row)) == row
    assert Reading.unvoiced(0, 1).to_dict(categories=True)["emotion"] is None
    plain = edgeser.load(headless_model_path).predict(voice_like(3.0), 16_000)
    assert plain.categories is None and plain.emotion is None
    assert list(plain.to_dict()) == TODAY_JSON_KEYS[1:]


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "today"), [([], TODAY_CSV), (["--per-window"], TODAY_CSV_PER_WINDOW)]
)
def test_csv_without_the_flag_is_byte_for_byte_todays(
    flags, today, categorical_model_path, headless_model_path, backend, in_repo, capsys
):
    """Without --categories the csv is what it was before categorical heads: the bundled
    model, its head swapped or removed, writes the same bytes."""
    if backend == "onnxruntime":  # the bytes were recorded with onnxruntime
        assert score(capsys, *flags, SPEECH) == (0, today, "")
    bundled = score(capsys, *flags, SPEECH)
    for other in (categorical_model_path, headless_model_path):
        assert score(capsys, "--model", str(other), *flags, SPEECH) == bundled


def test_csv_with_categories_appends_emotion_then_one_column_per_label(
    categorical_model_path, gap_wav, backend, capsys
):
    model = edgeser.load(categorical_model_path, backend=backend)
    code, out, _ = score(
        capsys, "--model", str(model.path), "--categories", "--per-window", str(gap_wav)
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split(",") == [*CSV_HEADER, "emotion", *CATEGORY_LABELS]
    _, plain, _ = score(capsys, "--model", str(model.path), "--per-window", str(gap_wav))
    assert [",".join(line.split(",")[:6]) for line in lines] == plain.splitlines()
    windows = model.score_file(gap_wav).windows
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(windows)
    for row, window in zip(rows, windows, strict=True):
        if window.voiced:
            assert row["emotion"] == window.emotion
            assert [row[k] for k in CATEGORY_LABELS] == [
                f"{window.categories[k]:.4f}" for k in CATEGORY_LABELS
            ]
        else:
            assert [row[k] for k in ("emotion", *CATEGORY_LABELS)] == [""] * 5


def test_categories_flag_with_a_model_without_the_head_is_a_one_line_usage_error(
    headless_model_path, capsys
):
    model = str(headless_model_path)
    code, out, err = score(capsys, "--model", model, "--categories", str(SPEECH_WAV))
    assert (code, out) == (2, "")
    assert err == f"edgeser: error: --categories: {model} has no categorical head\n"


def test_table_with_categories_has_the_emotion_and_label_columns(
    categorical_model_path, gap_wav, capsys
):
    args = ["--model", str(categorical_model_path), "--format", "table", "--per-window"]
    code, out, _ = score(capsys, *args, "--categories", str(gap_wav))
    _, plain, _ = score(capsys, *args, str(gap_wav))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[-5:] == ["emotion", *CATEGORY_LABELS]
    assert [line[: len(p)] for line, p in zip(lines, plain.splitlines(), strict=True)] == (
        plain.splitlines()
    )
    unvoiced = [line for line in lines[1:] if line.split()[3] == "-"]
    assert unvoiced and all(line.split()[-5:] == ["-"] * 5 for line in unvoiced)
    assert len({len(line) for line in lines}) == 1  # aligned


def test_jsonl_has_emotion_and_categories_on_every_row_of_a_head_model(
    categorical_model_path, headless_model_path, gap_wav, capsys
):
    args = ["--format", "jsonl", "--per-window", str(gap_wav)]
    _, out, _ = score(capsys, "--model", str(categorical_model_path), *args)
    rows = [json.loads(line) for line in out.splitlines()]
    assert all(list(row) == [*TODAY_JSON_KEYS, "emotion", "categories"] for row in rows)
    assert {row["emotion"] is None for row in rows} == {True, False}  # unvoiced: null
    _, plain, _ = score(capsys, "--model", str(headless_model_path), *args)
    assert all(list(json.loads(line)) == TODAY_JSON_KEYS for line in plain.splitlines())


def test_info_lists_the_labels_or_says_there_is_no_head(
    categorical_model_path, headless_model_path, capsys
):
    assert main(["info", str(categorical_model_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "categories:    anger, happiness, neutral, sadness" in lines
    assert "  categories: tensor(float) ['batch', 4]" in lines
    assert main(["info", str(headless_model_path)]) == 0
    assert "categories:    none (no categorical head)" in capsys.readouterr().out.splitlines()


def test_stream_shows_the_top_label_in_its_live_line(categorical_model_path, capsys):
    args = ["stream", "--model", str(categorical_model_path), "--from-file", str(SPEECH_WAV)]
    assert main([*args, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(row["emotion"] in CATEGORY_LABELS for row in rows if row["voiced"])
    assert main([*args, "--format", "bars"]) == 0
    line = capsys.readouterr().out.rstrip("\n").split("\r")[-1].removesuffix("\x1b[K")
    last = rows[-1]
    assert last["voiced"]
    assert line.endswith(f"  {last['emotion']} {last['categories'][last['emotion']]:.2f}")


def test_the_live_line_fits_80_columns_with_a_long_label():
    reading = Reading(0, 3599.0, 1.0, 1.0, 1.0, categories={"contentment": 1.0, "anger": 0.0})
    line = bars_line(reading)
    assert line.endswith("  contentment 1.00") and len(line) <= 80
    assert "█" * 8 + " 1.00" in line
    plain = bars_line(Reading(0, 1.0, 1.0, 1.0, 1.0))  # no head: the bars as they were
    assert plain.endswith("█" * 12 + " 1.00") and len(plain) == 70


def test_stream_smoothing_averages_the_probabilities_too(categorical_model_path, backend):
    model = edgeser.load(categorical_model_path, backend=backend)
    raw = list(Stream(model, FileSource(SPEECH_WAV)))
    smooth = list(Stream(model, FileSource(SPEECH_WAV), smoothing=0.5))
    assert len(raw) > 2 and all(r.voiced for r in raw)
    expected = None
    for r, s in zip(raw, smooth, strict=True):
        p = np.array(list(r.categories.values()))
        expected = p if expected is None else 0.5 * p + 0.5 * expected
        np.testing.assert_allclose(list(s.categories.values()), expected, rtol=1e-12)
        assert abs(sum(s.categories.values()) - 1) < 1e-5
        assert s.emotion == max(s.categories, key=s.categories.get)


def test_a_model_without_the_head_has_none_anywhere(headless_model_path, backend):
    model = edgeser.load(headless_model_path, backend=backend)
    assert model.categories == () and model.info.categories == ()
    result = model.score_file(SPEECH_WAV)
    assert all(w.categories is None for w in [*result.windows, result.aggregate])


def test_the_bundled_model_reads_the_four_categories_on_voiced_windows(backend):
    model = edgeser.load(backend=backend)
    assert model.categories == CATEGORY_LABELS
    result = model.score_file(SPEECH_WAV)
    voiced = [w for w in result.windows if w.voiced]
    assert voiced and all(abs(sum(w.categories.values()) - 1) < 1e-5 for w in voiced)
    assert result.aggregate.emotion in CATEGORY_LABELS
