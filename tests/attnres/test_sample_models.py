"""The shipped trio: loads, matches its model card, beats the unigram baseline, trained depth queries."""

import re
from pathlib import Path

import pytest
import torch

from attnres import load_model
from attnres.card import recorded_losses
from attnres.data import heldout_loss, load_corpus, unigram_loss

ROOT = Path(__file__).resolve().parents[2]
MODELS = {rule: ROOT / "sample_models" / f"shakespeare-{rule}" for rule in ("prenorm", "full", "block")}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def card_value(path: Path, field: str) -> float:
    match = re.search(rf"^\| {re.escape(field)} \| ([0-9.]+) \|$", (path / "README.md").read_text(), re.M)
    assert match, f"{field} missing from the model card of {path.name}"
    return float(match.group(1))


@pytest.mark.parametrize("rule", MODELS)
def test_validation_loss_matches_card_and_beats_unigram(rule, corpus):
    model = load_model(MODELS[rule])
    assert model.config.residual == rule and model.config.n_layer >= 8
    loss = heldout_loss(model, corpus.val, n_windows=32)
    assert round(loss, 2) == round(card_value(MODELS[rule], "final validation loss"), 2)
    assert loss < unigram_loss(corpus.train, corpus.val, len(corpus.tokenizer)) - 1.5


@pytest.mark.parametrize("rule", MODELS)
def test_recorded_losses_are_the_numbers_of_the_card(rule):
    recorded = recorded_losses(MODELS[rule])
    assert recorded.parameters == card_value(MODELS[rule], "parameters")
    assert recorded.train_loss == card_value(MODELS[rule], "final train loss (fixed training slice)")
    assert recorded.validation_loss == card_value(MODELS[rule], "final validation loss")


def test_matched_budget():
    steps = {card_value(p, "steps") for p in MODELS.values()}
    tokens = {card_value(p, "tokens seen") for p in MODELS.values()}
    seeds = {card_value(p, "seed") for p in MODELS.values()}
    assert len(steps) == len(tokens) == len(seeds) == 1


@pytest.mark.parametrize("rule", ["full", "block"])
def test_attnres_queries_trained(rule):
    model = load_model(MODELS[rule])
    L = model.config.n_sublayers
    norms = torch.stack([model.site(l).query.norm() for l in range(2, L + 2)])
    assert (norms > 0.05).all(), norms  # site 1 has one source and never trains
    assert model.config.residual != "block" or model.config.n_blocks in (4, 8)


def test_prenorm_has_no_depth_parameters():
    names = [n for n, _ in load_model(MODELS["prenorm"]).named_parameters()]
    assert not [n for n in names if "_res." in n or n.startswith("out_res")]


@pytest.mark.parametrize("rule", MODELS)
def test_snapshots_load_and_start_from_zero_queries(rule):
    snaps = sorted((MODELS[rule] / "snapshots").iterdir())
    assert len(snaps) >= 3
    first = load_model(snaps[0])
    assert first.config == load_model(MODELS[rule]).config
    if rule != "prenorm":
        assert all(first.site(l).query.abs().max() == 0 for l in range(1, first.config.n_sublayers + 2))
