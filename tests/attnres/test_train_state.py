"""When a run keeps its resume state and when it stops early, and the state's round trip."""

from __future__ import annotations

import torch

from attnres.data import BatchSampler
from attnres.train_state import ResumePlan, load_resume, save_resume
from tests.toys import tiny_model


def test_saves_every_n_steps_and_once_more_where_it_stops():
    plan = ResumePlan(every=4, stop_after=5, first=0, last=12)
    assert [s for s in range(13) if plan.saves_at(s)] == [4, 5, 8, 12]
    assert [s for s in range(13) if plan.stops_at(s)] == [5]
    resumed = ResumePlan(every=4, stop_after=5, first=5, last=12)
    assert [s for s in range(5, 13) if resumed.saves_at(s)] == [8, 10, 12]
    assert [s for s in range(5, 13) if resumed.stops_at(s)] == [10]


def test_a_run_that_reaches_its_last_step_does_not_stop_early():
    plan = ResumePlan(every=0, stop_after=12, first=0, last=12)
    assert not any(plan.stops_at(s) or plan.saves_at(s) for s in range(13))
    assert not any(ResumePlan(0, 0, 3, 12).saves_at(s) for s in range(3, 13))


def test_state_round_trips_weights_optimizer_and_data_order(tmp_path):
    model = tiny_model("block", 2, vocab="abcdefgh", n_layer=2, d_model=16, block_size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sampler = BatchSampler(torch.arange(200).numpy() % 8, 8, 4, seed=3)
    x, y = sampler.next()
    model(x, targets=y).loss.backward()
    optimizer.step()
    save_resume(tmp_path, 7, model, optimizer, sampler, rank=0, wall=12.5)
    expected_batch = sampler.next()

    fresh = tiny_model("block", 2, vocab="abcdefgh", n_layer=2, d_model=16, block_size=8, seed=1)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    fresh_sampler = BatchSampler(torch.arange(200).numpy() % 8, 8, 4, seed=3)
    assert load_resume(tmp_path, fresh, fresh_optimizer, fresh_sampler, rank=0) == (7, 12.5)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
    assert torch.equal(
        fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert all(torch.equal(a, b) for a, b in zip(fresh_sampler.next(), expected_batch, strict=True))
    assert load_resume(tmp_path / "elsewhere", fresh, fresh_optimizer, fresh_sampler, rank=0) == (0, 0.0)
