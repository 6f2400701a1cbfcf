"""Learned reward models as rewards: a tiny random sequence classifier scores prompt + completion
through its chat template, batched, exactly as a direct forward pass; GRPO trains with it beside
the rule rewards and logs it as its own reward."""

from __future__ import annotations

import json

import pytest
import torch

from r1kit.config import ConfigError, load_config
from r1kit.rewards import score
from r1kit.rewards.reward_model import reward_model_reward
from r1kit.testing import tiny_tokenizer


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(cfg)
    path = tmp_path_factory.mktemp("rm") / "rm"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


PROMPTS = ["<policy prompt> What is 2 + 3?", "<policy prompt> What is 1 + 1?", "<policy prompt> What is 9 + 9?"]
COMPLETIONS = ["<think>2 + 3 = 5</think> <answer>5</answer>", "<answer>2</answer>", "<think>hmm</think> 17"]
QUESTIONS = ["What is 2 + 3?", "What is 1 + 1?", "What is 9 + 9?"]


def direct_scores(rm_dir, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    tok = AutoTokenizer.from_pretrained(rm_dir)
    with torch.no_grad():
        return [model(**tok(t, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item() for t in texts]


def test_scores_are_the_classifiers_logit_on_the_chat_templated_conversation(rm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(rm_dir)
    texts = [tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": c}], tokenize=False)
             for q, c in zip(QUESTIONS, COMPLETIONS)]
    want = direct_scores(rm_dir, texts)  # one at a time, no padding
    got = reward_model_reward(PROMPTS, COMPLETIONS, model=str(rm_dir), batch_size=2, question=QUESTIONS)
    assert got == pytest.approx(want, abs=1e-5)  # batched with right padding: the same scores
    # without the question column: TRL's text form, prompt followed by completion
    plain = reward_model_reward(PROMPTS, COMPLETIONS, model=str(rm_dir))
    assert plain == pytest.approx(direct_scores(rm_dir, [p + c for p, c in zip(PROMPTS, COMPLETIONS)]), abs=1e-5)


def test_normalize_standardises_by_running_statistics(rm_dir, tmp_path):
    import shutil

    fresh = tmp_path / "rm-copy"  # its own running statistics
    shutil.copytree(rm_dir, fresh)
    got = reward_model_reward(PROMPTS, COMPLETIONS, model=str(fresh), normalize=True, question=QUESTIONS)
    raw = reward_model_reward(PROMPTS, COMPLETIONS, model=str(fresh), question=QUESTIONS)
    mean = sum(raw) / 3
    std = (sum((x - mean) ** 2 for x in raw) / 2) ** 0.5
    assert got == pytest.approx([(x - mean) / std for x in raw], abs=1e-5)


def test_two_reward_models_beside_a_rule_reward_in_one_score_call(rm_dir):
    opts = {"reward_model_helpful": {"model": str(rm_dir)}, "reward_model_safety": {"model": str(rm_dir), "batch_size": 1}}
    res = score(PROMPTS, COMPLETIONS, {"answer": ["5", "2", "18"], "question": QUESTIONS},
                {"accuracy": 1.0, "reward_model_helpful": 0.5, "reward_model_safety": 0.25}, opts)
    helpful = res.per_reward["reward_model_helpful"]
    assert res.per_reward["reward_model_safety"] == pytest.approx(helpful, abs=1e-5)
    assert res.per_reward["accuracy"] == [1.0, 1.0, 0.0]
    assert list(res.total) == pytest.approx([a + 0.75 * h for a, h in zip([1.0, 1.0, 0.0], helpful)], abs=1e-5)


def test_grpo_trains_with_a_reward_model_and_logs_it(rm_dir, tiny_dir, tmp_path):
    from r1kit.grpo.train import train

    run = train(load_config(None, [
        f"model.name_or_path={tiny_dir}", f"output_dir={tmp_path / 'run'}", "train.max_steps=1", "train.progress=false",
        "rollout.group_size=2", "rollout.max_new_tokens=6", "train.prompts_per_step=2",
        f"rewards={{accuracy: 1.0, reward_model_helpful: {{weight: 0.5, model: {rm_dir}}}}}",
    ]))
    (row,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert "rewards/reward_model_helpful/mean" in row and row["reward/errors"] == 0


@pytest.mark.parametrize("rewards, message", [
    ("{reward_model: 1.0}", "give the 'model' option"),
    ("{reward_model: {weight: 1.0, model: /no/such/rm}}", "does not exist"),
    ("{reward_model_helpful: {weight: 1.0, model: x, batch: 2}}", "no option 'batch'; did you mean 'batch_size'"),
])
def test_bad_reward_model_options_fail_at_config_time(rewards, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"rewards={rewards}"])
