"""Rewards cross the r1kit / TRL border in both directions.

- r1kit's registered rewards are TRL reward functions: TRL's ``GRPOTrainer`` trains with them.
- Rewards written as TRL's docs write them (text or conversational completions, ``**kwargs``),
  and TRL's own ``trl.rewards``, work in r1kit as ``module:function`` names: in ``score`` and in a
  real r1kit GRPO step.
- r1kit's shaping rewards give the same numbers as TRL's reference implementations.

TRL is imported inside the tests: a reward worker process imports this module by name to run the
rewards below, and should not pay for TRL's trainer to do so.
"""

import functools
import json
import math
import re

import pytest

from r1kit.rewards import REWARDS, check_reward_options, resolve_reward, score

trl_rewards = pytest.importorskip("trl.rewards")


# --- rewards exactly as TRL's GRPOTrainer docs write them ---


def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion)) for completion in completions]


def format_reward_func(completions, **kwargs):
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


def reward_func(completions, ground_truth, **kwargs):
    # Regular expression to capture content inside \boxed{}
    matches = [re.search(r"\\boxed\{(.*?)\}", completion) for completion in completions]
    contents = [match.group(1) if match else "" for match in matches]
    # Reward 1 if the content is the same as the ground truth, 0 otherwise
    return [1.0 if c == gt else 0.0 for c, gt in zip(contents, ground_truth)]


def logs_step(completions, trainer_state, log_metric, **kwargs):
    """A TRL-style reward that logs a metric and the step it sees (TRL: updates done so far)."""
    log_metric("my/metric", 2.0)
    log_metric("my/step", trainer_state.global_step)
    return [0.0] * len(completions)


HERE = __name__


def test_trl_doc_and_trl_library_rewards_score_in_r1kit():
    responses = [
        "<think>3 + 4</think><answer>7</answer>",
        "<think>3 + 4 = \\boxed{7}",
        "no tags, answer \\boxed{8}",
    ]
    columns = {"ground_truth": ["7", "7", "7"], "solution": ["7", "7", "7"]}
    weights = {
        f"{HERE}:reward_len": 1.0,
        f"{HERE}:format_reward_func": 1.0,  # conversational: completion[0]["content"]
        f"{HERE}:reward_func": 1.0,  # uses the ground_truth column
        "trl.rewards:think_format_reward": 1.0,  # conversational, from TRL itself
        "trl.rewards:accuracy_reward": 1.0,  # conversational, math-verify, uses the solution column
        "format": 1.0,
    }
    out = score(["p"] * 3, responses, columns, weights)
    assert out.errors == {name: 0 for name in weights} and out.timeouts == {name: 0 for name in weights}
    pr = out.per_reward
    assert pr[f"{HERE}:reward_len"] == [-abs(20 - len(r)) for r in responses]
    assert pr[f"{HERE}:format_reward_func"] == [1.0, 0.0, 0.0]
    assert pr[f"{HERE}:reward_func"] == [0.0, 1.0, 0.0]
    assert pr["trl.rewards:think_format_reward"] == [1.0, 0.0, 0.0]  # the 2nd has no </think>
    assert pr["trl.rewards:accuracy_reward"] == [0.0, 1.0, 0.0]  # TRL's reads \boxed{} only
    assert pr["format"] == [1.0, 0.0, 0.0]
    # TRL's accuracy_reward takes log_extra: its columns come back (from the worker it ran in)
    assert out.logged_extra["solution"] == ["7", "7", "7"] and len(out.logged_extra["answer_parsed"]) == 3
    # completions already in conversational form reach conversational rewards unchanged
    conv = [[{"role": "assistant", "content": r}] for r in responses]
    conversational = [f"{HERE}:format_reward_func", "trl.rewards:think_format_reward", "format"]
    again = score(["p"] * 3, conv, columns, {name: 1.0 for name in conversational})
    assert again.per_reward == {name: pr[name] for name in conversational}


def test_a_plugin_reward_is_one_importable_wrapper():
    from r1kit.rewards.pool import resolve_target, target_of

    fn = resolve_reward("trl.rewards:think_format_reward")
    assert fn is resolve_reward("trl.rewards:think_format_reward")
    assert fn.__wrapped__ is trl_rewards.think_format_reward and fn.__name__ == "think_format_reward"
    target = target_of(fn)
    assert target == "r1kit.rewards.registry:plugin:trl/rewards:think_format_reward"
    assert resolve_target(target) is fn
    # r1kit's own rewards named by module:function stay themselves
    assert resolve_reward("r1kit.rewards.shaping:overlong_reward") is REWARDS["overlong"]
    # a reward whose error is not about the completion form reports that error
    with pytest.raises(TypeError, match="ground_truth"):
        resolve_reward(f"{HERE}:reward_func")(prompts=["p"], completions=["x"])
    # a TRL-style reward takes **kwargs, so any option may be meant for it
    check_reward_options(f"{HERE}:reward_len", {"bogus": 1})


# --- r1kit's shaping rewards against TRL's reference implementations ---


def test_overlong_matches_trls_soft_overlong_punishment():
    lengths = [0, 50, 80, 81, 90, 99, 100, 101, 1000]
    ids = [[1] * n for n in lengths]
    trl = trl_rewards.get_soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)
    ours = REWARDS["overlong"]([""] * len(ids), [""] * len(ids), completion_ids=ids, max_len=100, buffer=20)
    assert ours == pytest.approx(trl(completion_ids=ids))


def test_repetition_on_tokens_matches_trls_repetition_penalty():
    ids = [[1, 2, 3, 4], [5, 5, 5, 5, 5], [1, 2, 1, 2, 1, 2, 3], [7], list(range(50)) * 3]
    for n, penalty in ((2, -1.0), (3, -0.5), (1, -2.0)):
        trl = trl_rewards.get_repetition_penalty_reward(ngram_size=n, max_penalty=penalty)
        ours = REWARDS["repetition"](
            [""] * len(ids), [""] * len(ids), completion_ids=ids, ngram_size=n, max_penalty=penalty, unit="tokens"
        )
        assert ours == pytest.approx(trl(completion_ids=ids))


def test_cosine_length_matches_trls_cosine_scaled_reward():
    # TRL's docstring example, then more lengths; both sides judge "\boxed{1/3}" right and "1/2" wrong
    completions = [r"\boxed{\frac{1}{3}}", r"\boxed{\frac{1}{2}}"] * 4
    ids = [[1] * n for n in (50, 50, 0, 0, 100, 100, 130, 13)]
    solution = [r"\frac{1}{3}"] * len(completions)
    trl = trl_rewards.get_cosine_scaled_reward(max_len=100)
    expected = trl(completions=[[{"content": c}] for c in completions], solution=solution, completion_ids=ids)
    assert expected[:2] == pytest.approx([0.75, -0.75])
    ours = REWARDS["cosine_length"](
        [""] * len(completions), completions, completion_ids=ids, max_len=100, answer=solution,
        task=["math"] * len(completions),
    )
    assert ours == pytest.approx(expected)


# --- r1kit rewards inside TRL's GRPOTrainer ---


def test_r1kit_rewards_train_inside_trl_grpo_trainer(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from r1kit.testing import save_tiny

    model_dir = save_tiny(tmp_path / "m")
    data = Dataset.from_dict(
        {
            "prompt": ["What is 1 + 2? <think>", "What is 3 + 4? <think>"] * 2,
            "answer": [3, 7] * 2,
            "task": ["arithmetic"] * 4,
        }
    )
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, max_steps=1, per_device_train_batch_size=4,
        num_generations=4, max_completion_length=8, report_to="none", save_strategy="no", logging_steps=1,
        gradient_checkpointing=False, seed=0,
    )
    funcs = [
        REWARDS["accuracy"], REWARDS["format"], REWARDS["soft_format"], REWARDS["tag_count"],
        REWARDS["cosine_length"], REWARDS["length"], REWARDS["repetition"], REWARDS["language"],
        # options as a TRL user sets them: a partial (TRL logs it under the function's name)
        functools.partial(REWARDS["overlong"], max_len=16, buffer=16),
    ]
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=funcs, args=args, train_dataset=data)
    trainer.train()
    log = trainer.state.log_history[0]
    assert trainer.state.global_step == 1
    names = [
        "accuracy_reward", "format_reward", "soft_format_reward", "tag_count_reward", "cosine_length_reward",
        "length_reward", "repetition_reward", "language_reward", "overlong_reward",
    ]
    for name in names:
        assert math.isfinite(log[f"rewards/{name}/mean"]) and math.isfinite(log[f"rewards/{name}/std"]), name
    # overlong with max_len = buffer = 16 is -tokens/16 below 16 tokens: TRL handed over completion_ids
    assert log["rewards/overlong_reward/mean"] == pytest.approx(-log["completions/mean_length"] / 16, abs=1e-5)
    # cosine_length on <= 8 of 1024 tokens: wrong answers sit near -1, right ones near +1
    assert abs(log["rewards/cosine_length_reward/mean"] - (2 * log["rewards/accuracy_reward/mean"] - 1)) < 1e-3
    assert 0 <= log["rewards/language_reward/mean"] <= 1


# --- TRL-style rewards inside r1kit's GRPO loop ---


def test_r1kit_grpo_step_with_trl_style_rewards(tmp_path, tiny_dir):
    from r1kit.config import config_from_dict
    from r1kit.grpo.train import train

    rewards = {
        "trl.rewards:think_format_reward": 1.0,
        f"{HERE}:format_reward_func": 0.5,
        f"{HERE}:reward_len": 0.01,
        "overlong": 0.1,
        "accuracy": 1.0,
        f"{HERE}:logs_step": 0.0,
    }
    cfg = config_from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"name_or_path": str(tiny_dir)},
            "data": {"source": "arithmetic"},
            "rollout": {"group_size": 4, "max_new_tokens": 8},
            "rewards": rewards,
            "reward_options": {"overlong": {"max_len": 16, "buffer": 16}},
            "train": {"max_steps": 1, "prompts_per_step": 2, "progress": False, "log_all_samples": True},
        }
    )
    run_dir = train(cfg)
    (row,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for name in rewards:
        assert f"rewards/{name}/mean" in row, name
    assert row["reward/errors"] in (0, {name: 0 for name in cfg.rewards})
    assert row["my/metric"] == 2.0 and row["my/step"] == 0.0  # log_metric lands in metrics.jsonl
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8
    texts = [s["completion"] for s in samples]
    assert all(t.startswith("<think>") for t in texts)  # rewards judged prefill + completion
    conv = [[{"role": "assistant", "content": t}] for t in texts]
    expected = {
        "trl.rewards:think_format_reward": trl_rewards.think_format_reward(conv),
        f"{HERE}:format_reward_func": format_reward_func(conv),
        f"{HERE}:reward_len": reward_len(texts),
        "overlong": [-s["completion_tokens"] / 16 for s in samples],
    }
    for name, values in expected.items():
        assert [s[f"reward/{name}"] for s in samples] == pytest.approx(values), name
