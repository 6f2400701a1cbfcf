"""LR schedules: warmup, transformers' decays, DeepSeek LLM's multi-step decay, by hand."""

import math

import pytest
import torch

from r1kit.schedules import SCHEDULES, build_scheduler, lr_multiplier


def test_warmup_then_constant():
    f = lr_multiplier("constant", warmup=4, total=10)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_linear_and_cosine_follow_transformers_after_warmup():
    lin, cos = lr_multiplier("linear", 2, 12), lr_multiplier("cosine", 2, 12)
    assert lin(0) == 0.5 and lin(1) == 1.0  # our warmup: the first step already learns
    assert lin(2) == pytest.approx(1.0) and lin(7) == pytest.approx(0.5) and lin(12) == 0.0
    assert cos(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5))) and cos(12) == pytest.approx(0.0)
    assert cos(40) == cos(12)  # past the end the schedule stays where it ended


def test_multistep_drops_to_31_6_then_10_percent_at_80_and_90_percent():
    f = lr_multiplier("multistep", warmup=2, total=100)
    assert f(0) == 0.5 and f(1) == 1.0 and f(79) == 1.0
    assert f(80) == 0.316 and f(89) == 0.316
    assert f(90) == 0.1 and f(99) == 0.1
    g = lr_multiplier("multistep", warmup=0, total=10, milestones=(0.5,), factors=(0.25,))
    assert [g(s) for s in range(10)] == [1.0] * 5 + [0.25] * 5


def test_unknown_schedule_is_an_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match="multistep"):
        lr_multiplier("cosine_with_restarts", 0, 10)
    assert set(SCHEDULES) == {"constant", "linear", "cosine", "multistep"}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_scheduler_state_resumes_exactly(name):
    def run(steps, state=None):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = build_scheduler(opt, name, 2, 10, (0.5,), (0.5,))
        if state:
            sched.load_state_dict(state)
        lrs = []
        for _ in range(steps):
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return lrs, sched.state_dict()

    full, _ = run(8)
    first, state = run(3)
    rest, _ = run(5, state)
    assert first + rest == full
    assert len(set(full)) > 1  # warmup and decay: the resumed part had somewhere to go wrong
