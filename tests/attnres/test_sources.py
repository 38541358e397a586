"""attnres.sources against the model itself and against DESIGN.md §1 written out independently.

For many (L, S, residual) the labels must be the model's own ``depth_sources``, and the tensors rebuilt
from ``sublayer_outputs`` by the rule's member sets must give back every recorded h_l as the
alpha-weighted (PreNorm: plain) sum of them. The member sets are also checked against a second
spelling of the partition: block n = layers (n-1)*S+1 .. min(n*S, L).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnres import Model, ModelConfig
from attnres.sources import SourceRule, running_block_sums, source_tensors

pytestmark = pytest.mark.usefixtures("one_thread")


def design_blocks(L: int, S: int) -> list[list[int]]:
    """DESIGN.md §1's partition, written as a list walk: cut after every S-th layer."""
    blocks, current = [], []
    for l in range(1, L + 1):
        current.append(l)
        if len(current) == S:
            blocks.append(current)
            current = []
    return blocks + ([current] if current else [])


@given(L=st.integers(1, 40), S=st.integers(1, 45))
@settings(max_examples=200, deadline=None)
def test_block_partition_and_labels(L, S):
    rule = SourceRule("block", L, S)
    blocks = design_blocks(L, S)
    assert rule.S == S and rule.N == len(blocks) == math.ceil(L / S)
    assert [list(rule.block_members(n)) for n in range(1, rule.N + 1)] == blocks
    for n, members in enumerate(blocks, start=1):
        for l in members:
            assert rule.block(l) == n and rule.ends_block(l) == (l == members[-1])
            labels = rule.labels(l)
            done = [f"B{i}" for i in range(1, n)]
            so_far = members[: members.index(l)]  # the block's outputs before l
            assert list(labels) == ["emb", *done] + (["partial"] if so_far else [])
            sums = [list(rule.members(label, l)) for label in labels]
            assert [rule.holder(i, l) for i in range(l)] == [k for k, m in enumerate(sums) for _ in m]
            assert sums == [[0], *blocks[: n - 1]] + ([so_far] if so_far else [])
    assert rule.readout_labels() == ("emb",) + tuple(f"B{n}" for n in range(1, len(blocks) + 1))
    assert [list(rule.members(x, L + 1)) for x in rule.readout_labels()] == [[0], *blocks]


@given(L=st.integers(1, 40), residual=st.sampled_from(["prenorm", "full"]), S=st.none() | st.integers(1, 9))
@settings(max_examples=100, deadline=None)
def test_full_and_prenorm_read_every_earlier_output(L, residual, S):
    rule = SourceRule(residual, L, S)  # S is ignored outside Block
    assert rule.S == 1 and rule.N == L
    for l in range(1, L + 2):
        assert rule.labels(l) == ("emb",) + tuple(f"L{i}" for i in range(1, l))
        assert [list(rule.members(x, l)) for x in rule.labels(l)] == [[i] for i in range(l)]


CASES = [("prenorm", None, 3), ("prenorm", 2, 2), ("full", None, 1), ("full", None, 4)] + [
    ("block", S, n_layer) for n_layer in (1, 2, 3, 5) for S in (1, 2, 3, 4, 7, 11) if S <= 2 * n_layer + 3
]


@pytest.mark.parametrize("residual, S, n_layer", CASES)
@pytest.mark.parametrize("impl", ["sequential", "two_phase"])
def test_rule_matches_the_model(residual, S, n_layer, impl):
    torch.manual_seed(n_layer * 100 + (S or 0))
    shape = {"vocab_size": 11, "block_size": 8, "n_head": 2, "d_model": 8}
    config = ModelConfig(**shape, n_layer=n_layer, residual=residual, attnres_block_size=S)
    model = Model(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_res.query"):
                p.normal_(0.0, 1.0)
    it = model(torch.randint(0, 11, (2, 5)), return_internals=True, depth_impl=impl).internals
    rule = SourceRule.of(config)
    assert it.depth_sources == rule.all_labels()
    assert [model.depth_source_labels(l) for l in range(1, rule.readout + 1)] == rule.all_labels()
    v = [it.embedding, *it.sublayer_outputs]
    running = running_block_sums(rule, it.sublayer_outputs)
    for l, labels in enumerate(it.depth_sources, start=1):
        rebuilt = source_tensors(rule, l, it.embedding, it.sublayer_outputs, running)
        by_members = [sum(v[i] for i in rule.members(label, l)) for label in labels]
        assert len(rebuilt) == len(by_members) == len(labels)
        for a, b in zip(rebuilt, by_members, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
        weights = torch.ones(2, 5, len(labels)) if it.depth_weights is None else it.depth_weights[l - 1]
        h = torch.einsum("btk,kbtd->btd", weights, torch.stack(by_members))
        torch.testing.assert_close(it.layer_inputs[l - 1], h, atol=1e-5, rtol=1e-5)
