"""TRL's extra reward arguments in r1kit: ``trainer_state``, ``log_metric(name, value)`` and
``log_extra(column, values)`` reach the rewards that take them, in every way a reward runs, and
what they log comes back in ``Scores.logged`` / ``Scores.logged_extra``.

The rewards are module-level so that a pool worker can import this module by name."""

import pytest

from r1kit.rewards import REWARDS, Runs, TrainerState, check_reward_options, register, runs, score

HERE = __name__


def curriculum(completions, trainer_state, log_metric, **kwargs):
    """A TRL-style reward: scores the step it sees and logs two metrics."""
    log_metric("my/metric", 2.0)
    log_metric("my/step", trainer_state.global_step)
    return [float(trainer_state.global_step)] * len(completions)


@runs(Runs.POOL_ITEM)
def judged_per_item(prompts, completions, log_metric, log_extra, **kwargs):
    """Logs each completion's length and a verdict column; "raise" fails after logging."""
    log_metric("judge/length", len(completions[0]))
    log_extra("judge/verdict", [f"len {len(c)}" for c in completions])
    if completions[0] == "raise":
        raise RuntimeError("no verdict")
    return [1.0]


def no_kwargs(prompts, completions):
    """Takes none of TRL's arguments: it must not get them."""
    return [1.0] * len(completions)


def only_state(prompts, completions, trainer_state):
    return [float(trainer_state.max_steps)] * len(completions)


def test_a_trl_style_reward_sees_the_step_and_its_metrics_come_back():
    out = score(["p"] * 2, ["a", "b"], {}, {f"{HERE}:curriculum": 1.0}, trainer_state=TrainerState(7, 10))
    assert out.errors == {f"{HERE}:curriculum": 0}
    assert out.per_reward[f"{HERE}:curriculum"] == [7.0, 7.0]  # trainer_state.global_step == 7
    assert out.logged == {"my/metric": 2.0, "my/step": 7.0}
    default = score(["p"], ["a"], {}, {f"{HERE}:curriculum": 1.0})
    assert default.per_reward[f"{HERE}:curriculum"] == [0.0] and default.logged["my/metric"] == 2.0


def test_per_item_logs_are_averaged_and_extra_columns_stay_aligned():
    name = f"{HERE}:judged_per_item"
    out = score(["p"] * 3, ["a", "bbb", "raise"], {}, {name: 1.0})
    assert out.per_reward[name] == [1.0, 1.0, 0.0] and out.errors[name] == 1
    assert out.logged == {"judge/length": 2.0}  # (1 + 3) / 2: the failed call's log does not count
    assert out.logged_extra == {"judge/verdict": ["len 1", "len 3", None]}


def test_in_process_and_thread_rewards_log_too_and_names_merge():
    def closure(prompts, completions, *, log_metric, **kw):  # runs in a thread
        log_metric("shared", 1.0)
        return [0.0] * len(completions)

    @runs(Runs.IN_PROCESS)
    def inline(prompts, completions, *, log_metric, trainer_state, **kw):
        log_metric("shared", 4.0)
        return [float(trainer_state.global_step)] * len(completions)

    register("_test_log_closure")(closure)
    register("_test_log_inline")(inline)
    try:
        weights = {"_test_log_closure": 1.0, "_test_log_inline": 1.0, f"{HERE}:curriculum": 1.0}
        out = score(["p"], ["a"], {}, weights, trainer_state=TrainerState(global_step=3))
    finally:
        del REWARDS["_test_log_closure"], REWARDS["_test_log_inline"]
    assert out.per_reward["_test_log_inline"] == [3.0]
    assert out.logged == {"shared": 2.5, "my/metric": 2.0, "my/step": 3.0}


def test_only_the_arguments_a_signature_takes_are_passed():
    weights = {f"{HERE}:no_kwargs": 1.0, f"{HERE}:only_state": 1.0}
    out = score(["p"] * 2, ["a", "b"], {}, weights, trainer_state=TrainerState(1, 50))
    assert out.errors == {name: 0 for name in weights}
    assert out.per_reward == {f"{HERE}:no_kwargs": [1.0, 1.0], f"{HERE}:only_state": [50.0, 50.0]}
    assert out.logged == {} and out.logged_extra == {}


def test_r1kit_rewards_ignore_them():
    columns = {"task": ["arithmetic"] * 2, "answer": ["7"] * 2, "completion_ids": [[1, 2], [1]]}
    good = "<think>3 + 4 = 7</think> <answer>7</answer>"
    # (reward_model needs its model option: tests/rewards/test_reward_model.py)
    ours = {name: 1.0 for name, fn in REWARDS.items() if fn.__module__.startswith("r1kit.") and name != "reward_model"}
    out = score(["p"] * 2, [good, "7"], columns, ours, trainer_state=TrainerState(2, 4))
    assert set(out.per_reward) >= {"accuracy", "length", "cosine_length", "format", "language"}
    assert sum(out.errors.values()) == 0 and sum(out.timeouts.values()) == 0
    assert out.per_reward["accuracy"] == [1.0, 0.0]
    with pytest.raises(ValueError, match="column 'log_metric'"):
        score(["p"], ["a"], {"log_metric": [1]}, {"format": 1.0})
    with pytest.raises(ValueError, match="the trainer passes it"):
        check_reward_options(f"{HERE}:curriculum", {"trainer_state": None})
