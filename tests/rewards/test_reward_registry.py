import pytest

from r1kit.config import ConfigError, config_from_dict
from r1kit.rewards import REWARDS, completion_text, register, resolve_reward
from r1kit.rewards.format import format_reward


def test_builtin_names():
    assert {"accuracy", "format", "soft_format", "tag_count"} <= set(REWARDS)
    assert resolve_reward("format") is format_reward


def test_module_function_names_resolve():
    assert resolve_reward("r1kit.rewards.format:format_reward") is format_reward
    fn = resolve_reward("r1kit.rewards.format:tag_count_reward")
    assert fn(["p"], ["<think></think><answer>1</answer>"]) == [1.0]
    for bad in ("r1kit.rewards.format:nope", "no_such_module_xyz:f", "nope"):
        with pytest.raises(KeyError):
            resolve_reward(bad)


def test_register_refuses_to_shadow_another_function():
    with pytest.raises(ValueError, match="already registered"):
        register("format")(lambda prompts, completions, **kw: [])


def test_config_validation_uses_the_registry():
    cfg = config_from_dict({"rewards": {"accuracy": 1.0, "r1kit.rewards.format:soft_format_reward": 0.5}})
    assert set(cfg.rewards) == {"accuracy", "r1kit.rewards.format:soft_format_reward"}
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        config_from_dict({"rewards": {"acuracy": 1.0}})


def test_completion_text_forms():
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "y"}]) == "y"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "z"}]) == "z"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "w"}]}]) == "w"
