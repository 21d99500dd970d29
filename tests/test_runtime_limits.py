"""Numbers from model metadata and from the Python API are range-checked when they arrive."""

from __future__ import annotations

import pytest
from conftest import tiny_model_info

import edgeser
from edgeser.contract import META_HOP_S, META_MIN_SAMPLES, META_WINDOW_S


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({META_WINDOW_S: "inf", META_HOP_S: "inf"}, "edgeser.window_s inf s is not in [0.25, 60]"),
        ({META_HOP_S: "1e-09"}, "edgeser.hop_s 1e-09 s is not in [0.01 s, the window]"),
        ({META_WINDOW_S: "nan"}, "edgeser.window_s nan s"),
        ({META_MIN_SAMPLES: "100000000"}, "edgeser.min_samples 100000000 is not in [1, 960000]"),
        ({META_MIN_SAMPLES: "0"}, "edgeser.min_samples 0 is not in [1, 960000]"),
        ({META_MIN_SAMPLES: "32000"}, "edgeser.window_s 1.0 s is not in [2, 60] s"),
    ],
)
def test_model_metadata_out_of_range_is_a_model_error_at_load(
    contract_model_factory, changes, message
):
    meta = {**tiny_model_info().to_metadata(), **changes}
    path = contract_model_factory(f"bad-{len(changes)}-{hash(message)}.onnx", metadata=meta)
    with pytest.raises(edgeser.ModelError) as caught:
        edgeser.load(path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("window", "hop", "message"),
    [
        (1e6, None, "window must be in (0, 60] s, got 1000000.0"),
        (float("inf"), float("inf"), "window must be in (0, 60] s, got inf"),
        (None, 1e-5, "hop must be in [0.01, 60] s, got 1e-05"),
        (None, float("nan"), "hop must be in [0.01, 60] s, got nan"),
    ],
)
def test_window_and_hop_arguments_are_checked(tiny_model, window, hop, message):
    with pytest.raises(edgeser.ConfigError) as caught:
        tiny_model.scorer(window, hop)
    assert message in str(caught.value)


def test_thread_count_is_bounded(tiny_model_path):
    with pytest.raises(edgeser.ConfigError, match="threads must be a whole number from 1 to 256"):
        edgeser.load(tiny_model_path, threads=10_000)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"edgeser.stream.window_samples": str(10**12)}, "window_samples 1000000000000 is not in"),
        ({"edgeser.stream.edge_margin": "-1"}, "edge_margin -1 is not in [0, window 48000)"),
    ],
)
def test_streaming_graph_metadata_out_of_range_is_refused(changes, message):
    from edgeser.incremental import StreamSpec

    meta = {
        "edgeser.stream.window_samples": "48000",
        "edgeser.stream.chunk_multiple": "80",
        "edgeser.stream.max_chunk": "16000",
        "edgeser.stream.edge_margin": "9",
        "edgeser.stream.model_sha256": "0" * 64,
        **changes,
    }
    with pytest.raises(ValueError) as caught:
        StreamSpec.parse(meta)
    assert message in str(caught.value)
