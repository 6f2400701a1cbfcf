"""score() runs each reward under a deadline: a reward that hangs or crashes costs its own entries,
counted, and the step goes on."""

import logging
import threading

import pytest

from r1kit.rewards import REWARDS, Runs, register, resolve_reward, runs, score
from r1kit.rewards.pool import get_pool
from r1kit.rewards.scoring import isolation

from deadline_helpers import run_in_threads, timed, worker_restart_seconds

# "cut off within the deadline + 1 s", plus what replacing a killed worker costs here and now
SLACK_S = 1.0 + worker_restart_seconds()
GOOD = "<think>3 + 4 = 7</think> <answer>7</answer>"
HANG = "<think>hang</think> <answer>7</answer>"
RAISE = "<think>raise</think> <answer>7</answer>"
EXIT = "<think>exit</think> <answer>7</answer>"


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Start the shared workers (and load the helper module and math-verify) before timing."""
    score(["p"] * 2, [GOOD, GOOD], {"task": ["math"] * 2, "answer": ["7"] * 2},
          {"accuracy": 1.0, "hanging_rewards:per_item": 1.0})


# How each of r1kit's rewards runs, as registered.
R1KIT_RUNS = {
    "accuracy": Runs.POOL_ITEM,  # may call sympy: one deadline per answer
    "cosine_length": Runs.POOL_ITEM,  # calls accuracy
    "length": Runs.POOL_BATCH,  # normalises over the group
    "format": Runs.IN_PROCESS,  # linear-time and pure
    "soft_format": Runs.IN_PROCESS,
    "tag_count": Runs.IN_PROCESS,
    "overlong": Runs.IN_PROCESS,
    "repetition": Runs.IN_PROCESS,
    "language": Runs.IN_PROCESS,
    "reward_model": Runs.IN_PROCESS,  # a torch model, loaded once in this process
}


def test_how_each_reward_runs():
    ours = {name: fn for name, fn in REWARDS.items() if fn.__module__.startswith("r1kit.")}
    assert {name: isolation(fn) for name, fn in ours.items()} == R1KIT_RUNS
    assert isolation(resolve_reward("r1kit.rewards.format:format_reward")) is Runs.IN_PROCESS
    # a user's module:function: per batch in the pool unless it declares otherwise
    assert isolation(resolve_reward("hanging_rewards:whole_batch")) is Runs.POOL_BATCH
    assert isolation(resolve_reward("hanging_rewards:per_item")) is Runs.POOL_ITEM  # @runs(Runs.POOL_ITEM)
    # what a worker cannot import runs in a thread, unless it asks to run in process
    assert isolation(lambda prompts, completions, **kw: []) is Runs.THREAD

    def local(prompts, completions, **kw):
        return []

    assert isolation(local) is Runs.THREAD
    assert runs(Runs.POOL_ITEM)(local) is local and isolation(local) is Runs.THREAD
    runs("in-process")(local)
    assert isolation(local) is Runs.IN_PROCESS
    # the names logs and warnings use
    assert [f"{mode}" for mode in Runs] == ["in-process", "per-item", "per-batch", "thread"]
    with pytest.raises(ValueError):
        runs("per-sample")


def test_a_user_reward_declared_per_item_is_called_once_per_completion():
    weights = {"hanging_rewards:item_sizes": 1.0, "hanging_rewards:batch_sizes": 1.0}
    out = score(["p"] * 3, [GOOD] * 3, {}, weights)
    assert out.per_reward == {"hanging_rewards:item_sizes": [1.0] * 3, "hanging_rewards:batch_sizes": [3.0] * 3}


def test_a_reward_that_sleeps_forever_is_cut_off_and_the_others_are_scored(caplog):
    weights = {"hanging_rewards:sleep_forever": 1.0, "format": 0.5, "accuracy": 1.0}
    columns = {"task": ["arithmetic"] * 3, "answer": ["7", "7", "8"]}
    # 2 s: room for a worker replaced after an earlier test's kill to start while the other hangs
    with caplog.at_level(logging.WARNING):
        out, took = timed(score, ["p"] * 3, [GOOD, GOOD, GOOD], columns, weights, batch_timeout_s=2.0)
    assert took < 2.0 + SLACK_S
    assert out.per_reward["hanging_rewards:sleep_forever"] == [0.0, 0.0, 0.0]
    assert out.timeouts == {"hanging_rewards:sleep_forever": 3, "format": 0, "accuracy": 0}
    assert out.errors == {"hanging_rewards:sleep_forever": 0, "format": 0, "accuracy": 0}
    assert out.per_reward["accuracy"] == [1.0, 1.0, 0.0]
    assert out.total == [1.5, 1.5, 0.5]
    assert "cut off by the deadline" in caplog.text


def test_per_item_rewards_lose_only_the_entries_that_hang_or_crash():
    responses = [GOOD, HANG, GOOD, RAISE, EXIT, GOOD, HANG, GOOD]
    starts = get_pool().starts
    out, took = timed(score, ["p"] * 8, responses, {}, {"hanging_rewards:per_item": 1.0}, timeout_s=0.5)
    assert out.per_reward["hanging_rewards:per_item"] == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert out.timeouts["hanging_rewards:per_item"] == 2
    assert out.errors["hanging_rewards:per_item"] == 2  # the exception and the dead worker
    # Two workers share the items; each hang costs its deadline once, plus fresh workers.
    assert took < 0.5 + SLACK_S + 1.0
    assert get_pool().starts > starts  # killed and crashed workers were replaced
    again = score(["p"] * 2, [GOOD, GOOD], {}, {"hanging_rewards:per_item": 1.0})
    assert again.per_reward["hanging_rewards:per_item"] == [1.0, 1.0]


def test_whole_batch_rewards_fail_as_a_whole():
    name = "hanging_rewards:whole_batch"
    out = score(["p"] * 3, [GOOD, RAISE, GOOD], {}, {name: 1.0})
    assert out.per_reward[name] == [0.0, 0.0, 0.0] and out.errors[name] == 3
    out, took = timed(score, ["p"] * 3, [GOOD, HANG, GOOD], {}, {name: 1.0}, timeout_s=0.2, batch_timeout_s=1.0)
    assert out.timeouts[name] == 3 and took < 1.0 + SLACK_S
    out = score(["p"] * 3, [GOOD] * 3, {}, {name: 1.0, "hanging_rewards:batch_sizes": 1.0})
    assert out.per_reward[name] == [1.0, 1.0, 1.0]
    assert out.per_reward["hanging_rewards:batch_sizes"] == [3.0, 3.0, 3.0]  # saw the whole batch


def test_a_math_answer_that_hangs_sympy_costs_only_its_own_entry():
    responses = [
        r"<think>x</think> <answer>\frac{1}{2}</answer>",
        r"<think>x</think> <answer>9^{9^{9^{9}}}</answer>",
        r"<think>x</think> <answer>2\sqrt{3}</answer>",
        r"<think>x</think> <answer>\binom{10^9}{500000}</answer>",
    ]
    columns = {"task": ["math"] * 4, "answer": ["0.5", "5", r"\sqrt{12}", "7"]}
    out, took = timed(score, ["p"] * 4, responses, columns, {"accuracy": 1.0}, timeout_s=0.5)
    assert out.per_reward["accuracy"] == [1.0, 0.0, 1.0, 0.0]
    assert out.timeouts["accuracy"] == 2 and out.errors["accuracy"] == 0
    assert took < 0.5 + SLACK_S + 1.0


def test_verifier_failures_reported_inside_a_worker_are_counted():
    out = score(["p"] * 3, ["a", "b", "c"], {}, {"hanging_rewards:reports_errors": 1.0})
    assert out.per_reward["hanging_rewards:reports_errors"] == [0.0, 0.0, 0.0]
    assert out.errors["hanging_rewards:reports_errors"] == 3


def test_a_per_item_reward_must_return_one_value():
    with pytest.raises(ValueError, match="returned 2 values for 1"):
        score(["p"] * 2, ["a", "b"], {}, {"hanging_rewards:two_values": 1.0})


def test_rewards_a_worker_cannot_import_run_in_a_thread_with_the_batch_deadline(caplog):
    release = threading.Event()

    def stuck(prompts, completions, **kw):
        release.wait(30)
        return [1.0] * len(completions)

    register("_test_stuck_closure")(stuck)
    register("_test_lambda")(lambda prompts, completions, **kw: [float(len(c)) for c in completions])
    try:
        with caplog.at_level(logging.WARNING):
            out, took = timed(score, ["p"] * 2, ["ab", "abc"], {}, {"_test_stuck_closure": 1.0, "_test_lambda": 1.0},
                              batch_timeout_s=0.5)
        assert took < 0.5 + SLACK_S
        assert out.per_reward == {"_test_stuck_closure": [0.0, 0.0], "_test_lambda": [2.0, 3.0]}
        assert out.timeouts == {"_test_stuck_closure": 2, "_test_lambda": 0}
        assert "cannot be killed" in caplog.text
    finally:
        release.set()
        del REWARDS["_test_stuck_closure"], REWARDS["_test_lambda"]


def test_score_from_four_threads_at_once():
    responses = [GOOD, HANG, GOOD, RAISE]
    weights = {"hanging_rewards:batch_sizes": 1.0, "hanging_rewards:per_item": 1.0, "format": 0.5}
    outs = {}

    def work(k):
        outs[k] = score(["p"] * 4, responses, {}, weights, timeout_s=0.5, batch_timeout_s=20)

    took = run_in_threads(work, 4)
    assert took < 4 * 0.5 + SLACK_S + 3  # 4 hangs on 2 workers, plus restarts
    assert sorted(outs) == [0, 1, 2, 3]
    for out in outs.values():
        assert out.per_reward["hanging_rewards:batch_sizes"] == [4.0] * 4
        assert out.per_reward["hanging_rewards:per_item"] == [1.0, 0.0, 1.0, 0.0]
        assert out.timeouts == {"hanging_rewards:batch_sizes": 0, "hanging_rewards:per_item": 1, "format": 0}
        assert out.errors == {"hanging_rewards:batch_sizes": 0, "hanging_rewards:per_item": 1, "format": 0}
