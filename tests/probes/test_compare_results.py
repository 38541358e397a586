"""Comparison, snapshot series, and the result dataclasses' contracts (shapes, frozen, JSON)."""

import dataclasses
import json

import numpy as np
import pytest

from attnres import save_model
from probes import (
    StreamNorms,
    ablate,
    compare,
    depth_retrieval,
    depth_sinks,
    depth_weights,
    encode_prompt,
    gate_attribution,
    gradient_norms,
    logit_lens,
    over_snapshots,
    stream_norms,
)


def test_compare_same_model_is_zero_and_different_depths_pad_with_nan(make_model):
    model = make_model("full")
    same = compare(depth_weights(model, "abc"), depth_weights(model, "abc"))
    assert same.same_shapes and same.same_labels and np.nanmax(np.abs(same.difference["mean"])) == 0
    deeper = make_model("full", n_layer=4)
    diff = compare(stream_norms(model, "abc"), stream_norms(deeper, "abc"))
    assert (
        diff.difference["input_rms_mean"].shape == (9,)
        and np.isnan(diff.difference["input_rms_mean"][7:]).all()
    )
    assert not diff.same_shapes and diff.notes
    with pytest.raises(ValueError, match="two results of one probe"):
        compare(depth_weights(model, "a"), stream_norms(model, "a"))


def test_snapshots_from_paths_and_models(make_model, tmp_path):
    paths = []
    for step, seed in ((100, 0), (200, 1)):
        paths.append(
            save_model(
                make_model("block", 2, seed=seed), tmp_path / f"step{step}", extra_config={"step": step}
            )
        )
    series = over_snapshots(paths, depth_weights, "abcd")
    assert series.names == ("step100", "step200") and series.steps.tolist() == [100, 200]
    assert series.stack("mean").shape == (2, 7, 4)
    in_memory = over_snapshots([make_model("full"), make_model("full", n_layer=2)], stream_norms, "ab")
    assert in_memory.steps.tolist() == [0, 1] and in_memory.stack("input_rms_mean").shape == (2, 7)
    assert "input_rms_mean" in in_memory.field_names()


def test_every_result_is_frozen_checked_and_json_ready(make_model):
    model = make_model("block", 3, n_layer=2)
    weights = depth_weights(model, ["abcd", "ab"])
    results = [
        weights,
        depth_sinks(weights),
        stream_norms(model, "abc"),
        depth_retrieval(model, "abc"),
        gradient_norms(model, "abc"),
        gate_attribution(model, "abc", n_steps=4),
        ablate(model, "abc", 3, "uniform"),
        logit_lens(model, "abc"),
        compare(weights, weights),
        encode_prompt(model, "ab\u2603"),
    ]
    for result in results:
        json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(json.dumps(weights.to_dict()))["per_token"][1][3][0][0] is None  # padding -> null
    with pytest.raises(dataclasses.FrozenInstanceError):
        weights.residual = "full"
    with pytest.raises(ValueError):
        weights.mean[0, 0] = 1.0
    norms = results[2]
    bad = dataclasses.replace  # rebuilding with a wrongly shaped field is refused
    with pytest.raises(ValueError, match="input_rms_mean"):
        bad(norms, input_rms_mean=np.zeros(3))
    assert isinstance(norms, StreamNorms)
