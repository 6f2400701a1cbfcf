"""Config: YAML + dotted overrides, validated up front with errors that name the key."""

import pytest
import yaml

from r1kit.config import STAGES, ConfigError, GRPORun, RewardSpec, config_from_dict, load_config, parse_overrides, save_config, to_dict


@pytest.fixture
def base_yaml(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": "/models/tiny"},
                "data": {"source": "arithmetic"},
                "rollout": {"group_size": 4, "max_new_tokens": 8},
                "rewards": {"accuracy": 1.0, "soft_format": 0.5},
                "train": {"max_steps": 4, "prompts_per_step": 2, "save_every": 2, "lr": "1e-3"},
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "override, bad, suggestion",
    [
        ("trian.max_steps=3", "'trian'", "'train'"),
        ("train.max_stpes=3", "'train.max_stpes'", "'train.max_steps'"),
        ("rollout.temprature=0.7", "'rollout.temprature'", "'rollout.temperature'"),
        ("model.lora.rank=8", "'model.lora.rank'", "'model.lora.r'"),
        ("data.arithmetic.max_val=5", "'data.arithmetic.max_val'", "'data.arithmetic.max_value'"),
    ],
)
def test_unknown_key_names_it_and_the_closest_valid_key(base_yaml, override, bad, suggestion):
    with pytest.raises(ConfigError) as e:
        load_config(base_yaml, [override])
    msg = str(e.value)
    assert f"unknown config key {bad}" in msg
    assert f"did you mean {suggestion}?" in msg


def test_unknown_key_in_the_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("grpo:\n  loss_typ: dapo\n")
    with pytest.raises(ConfigError, match=r"'grpo.loss_typ'.*did you mean 'grpo.loss_type'"):
        load_config(path)


def test_unknown_key_without_a_near_match_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'zzzz'.*valid keys: data, eval, grpo, model, name, output_dir"):
        load_config(None, ["zzzz=1"])


@pytest.mark.parametrize(
    "override, key, what",
    [
        ("train.max_steps=abc", "train.max_steps", "integer"),
        ("train.max_steps=2.5", "train.max_steps", "integer"),
        ("rollout.temperature=hot", "rollout.temperature", "number"),
        ("model.lora.enabled=maybe", "model.lora.enabled", "true/false"),
        ("train.lr=[1]", "train.lr", "number"),
        ("train={a: 1}", "train.a", "unknown config key"),
        ("train=5", "train", "mapping"),
        ("grpo.loss_type=ppo", "grpo.loss_type", "not one of"),
        ("grpo.scale=global", "grpo.scale", "not one of"),
        ("data.source=web", "data.source", "not one of"),
        ("model.dtype=fp8", "model.dtype", "not one of"),
        ("rollout.group_size=1", "rollout.group_size", "at least 2"),
        ("rollout.group_size=0", "rollout.group_size", ">= 1"),
        ("rollout.backend=sglang", "rollout.backend", "not one of ['hf', 'vllm', 'vllm-server']"),
        ("grpo.is_correction=clip", "grpo.is_correction", "not one of"),
        ("grpo.kl_estimator=k4", "grpo.kl_estimator", "not one of ['k1', 'k2', 'k3']"),
        ("train.lr_schedule=exponential", "train.lr_schedule", "'constant', 'cosine', 'linear', 'multistep'"),
        ("train.lr_factors=[0.5]", "train.lr_factors", "one factor per milestone"),
        ("train.lr_milestones=[0.9, 0.8]", "train.lr_milestones", "increasing"),
        ("data.template=alpaca", "data.template", "not one of"),
        ("data.dataset.format=csv", "data.dataset.format", "not one of"),
        ("model.lora.r=0", "model.lora.r", ">= 1"),
        ("reward_runtime.timeout_s=0", "reward_runtime.timeout_s", "> 0"),
        ("rollout.vllm.retries=-1", "rollout.vllm.retries", ">= 0"),
        ("stage=dpo_typo", "stage", "not one of ['distill', 'dpo', 'eval', 'generate', 'grpo', 'pipeline', 'sft']"),
        ("train.diagnostic_rewards=[acuracy]", "train.diagnostic_rewards", "did you mean 'accuracy'"),
        ("train.lr=0", "train.lr", "> 0"),
        ("train.save_every=-1", "train.save_every", ">= 0"),
        ("rollout.top_p=1.5", "rollout.top_p", "(0, 1]"),
        ("data.source=dataset", "data.dataset.path", "required"),
    ],
)
def test_bad_values_name_the_key(base_yaml, override, key, what):
    with pytest.raises(ConfigError) as e:
        load_config(base_yaml, [override])
    assert key in str(e.value) and what in str(e.value)


def test_overrides(base_yaml, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(
        base_yaml,
        [f"output_dir={out}", "train.max_steps=7", "train.save_every=3", "seed=11", "rollout.temperature=0.5"],
    )
    assert cfg.output_dir == str(out)
    assert cfg.train.max_steps == 7 and cfg.train.save_every == 3 and cfg.seed == 11
    assert cfg.rollout.temperature == 0.5
    # untouched keys keep the file's values; "1e-3" (YAML 1.1 reads it as a string) is a float
    assert cfg.rollout.group_size == 4 and cfg.train.prompts_per_step == 2
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.model.name_or_path == "/models/tiny"


def test_numeric_looking_strings_stay_strings():
    cfg = load_config(None, ["output_dir=2024", "data.arithmetic.ops=+"])
    assert cfg.output_dir == "2024" and cfg.data.arithmetic.ops == "+"


def _weights(cfg):
    return {name: spec.weight for name, spec in cfg.rewards.items()}


def test_reward_override_changes_one_weight_and_keeps_the_others(base_yaml):
    cfg = load_config(base_yaml, ["rewards.accuracy=2.0"])
    assert _weights(cfg) == {"accuracy": 2.0, "soft_format": 0.5} == cfg.reward_weights
    cfg = load_config(base_yaml, ["rewards.tag_count=0.1"])
    assert _weights(cfg) == {"accuracy": 1.0, "soft_format": 0.5, "tag_count": 0.1}
    # without a rewards section in the file the defaults are what gets overridden
    default = _weights(GRPORun())
    cfg = load_config(None, ["rewards.accuracy=2.0"])
    assert _weights(cfg) == {**default, "accuracy": 2.0} and len(cfg.rewards) == len(default)


def test_a_whole_rewards_mapping_on_the_command_line_replaces_the_rewards(base_yaml):
    assert load_config(base_yaml, ["rewards={format: 1.0}"]).reward_weights == {"format": 1.0}
    assert load_config(None, ["rewards={format: 1.0}"]).reward_weights == {"format": 1.0}
    # ...while a dotted key changes one reward and keeps the others
    assert load_config(base_yaml, ["rewards.format=1.0"]).reward_weights == {"accuracy": 1.0, "soft_format": 0.5, "format": 1.0}


def test_rewards_in_the_file_replace_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rewards: {soft_format: 1.0}\n")
    assert load_config(path).rewards == {"soft_format": RewardSpec(1.0)}


def test_a_reward_carries_its_weight_and_options_in_one_spec(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rewards:\n  accuracy: 0.5\n  overlong: {weight: 0.2, max_len: 48, buffer: 8}\n")
    cfg = load_config(path)
    assert cfg.rewards == {"accuracy": RewardSpec(0.5), "overlong": RewardSpec(0.2, {"max_len": 48, "buffer": 8})}
    assert cfg.reward_weights == {"accuracy": 0.5, "overlong": 0.2}
    assert cfg.reward_options == {"overlong": {"max_len": 48, "buffer": 8}}
    # overrides reach the weight and one option, keeping the rest
    cfg = load_config(path, ["rewards.overlong.buffer=4", "rewards.overlong.weight=0.3"])
    assert cfg.rewards["overlong"] == RewardSpec(0.3, {"max_len": 48, "buffer": 4})
    cfg = load_config(path, ["rewards.overlong=0.7"])  # the short form sets the weight only
    assert cfg.rewards["overlong"] == RewardSpec(0.7, {"max_len": 48, "buffer": 8})
    # a spec without a weight weighs 1
    assert load_config(None, ["rewards={overlong: {max_len: 512}}"]).rewards["overlong"] == RewardSpec(1.0, {"max_len": 512})
    with pytest.raises(ConfigError, match=r"rewards.overlong: expected a weight"):
        load_config(None, ["rewards={overlong: {weight: heavy}}"])


def test_old_reward_options_key_is_folded_into_the_rewards():
    """Run directories written before rewards carried their options have `reward_options`."""
    cfg = config_from_dict({"rewards": {"overlong": 0.1}, "reward_options": {"overlong": {"max_len": 512}}})
    assert cfg.rewards == {"overlong": RewardSpec(0.1, {"max_len": 512})}
    with pytest.raises(ConfigError, match="reward_options.format: there is no reward 'format'"):
        config_from_dict({"rewards": {"overlong": 0.1}, "reward_options": {"format": {}}})


def test_the_yaml_says_its_stage_and_a_command_checks_it(tmp_path):
    assert set(STAGES) == {"grpo", "eval", "sft", "generate", "dpo", "distill", "pipeline"} and STAGES["grpo"] is GRPORun
    path = tmp_path / "c.yaml"
    path.write_text("stage: grpo\ntrain: {max_steps: 3}\n")
    assert load_config(path, stage="grpo").train.max_steps == 3
    assert load_config(None, [], stage="grpo").stage == "grpo"
    path.write_text("stage: sfft\n")
    with pytest.raises(ConfigError, match="stage: 'sfft' is not one of"):
        load_config(path)
    path.write_text("stage: sft\ndata: {path: t.jsonl}\n")
    assert load_config(path).data.path == "t.jsonl"
    with pytest.raises(ConfigError, match="the config is for stage 'sft', not 'grpo'"):
        load_config(path, stage="grpo")
    path.write_text("stage: eval\neval: {datasets: [arithmetic], k: 4}\n")
    assert load_config(path).eval.k == 4  # `r1kit config` resolves any stage's file
    with pytest.raises(ConfigError, match="the config is for stage 'eval', not 'grpo'"):
        load_config(path, stage="grpo")


def test_sections_check_themselves_when_built_in_python():
    from r1kit.config import RolloutSection, TrainSection

    with pytest.raises(ConfigError, match="group_size: must be >= 1"):
        RolloutSection(group_size=0)
    with pytest.raises(ConfigError, match="backend: 'nope' is not one of"):
        RolloutSection(backend="nope")
    assert TrainSection(lr_schedule="multistep").lr_milestones == [0.8, 0.9]


def test_unknown_reward_names_the_closest(base_yaml):
    with pytest.raises(ConfigError, match=r"rewards.acuracy: unknown reward.*did you mean 'accuracy'"):
        load_config(base_yaml, ["rewards.acuracy=1.0"])
    with pytest.raises(ConfigError, match=r"rewards.no_such_mod:fn: .*cannot import module 'no_such_mod'"):
        load_config(None, ["rewards={'no_such_mod:fn': 1.0}"])
    with pytest.raises(ConfigError, match=r"rewards.accuracy: expected a weight .*got 'high'"):
        load_config(base_yaml, ["rewards.accuracy=high"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_overrides(["train.max_steps"])
    with pytest.raises(ConfigError, match="has no key"):
        parse_overrides(["=3"])
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        parse_overrides(["seed=1", "seed.x=2"])
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {max_steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_resolved_config_round_trips(base_yaml, tmp_path):
    cfg = load_config(
        base_yaml,
        [
            "output_dir=0123",
            "model.lora.enabled=true",
            "model.lora.target_modules=[q_proj, v_proj]",
            "grpo.epsilon_high=0.28",
            "grpo.loss_type=dapo",
            "data.system_prompt='Think: then answer.'",
            "data.prefill=''",
            "data.arithmetic.ops=+-",
            "rewards.accuracy=2",
            "rewards.overlong.max_len=512",
            "train.lr_schedule=multistep",
        ],
    )
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)
    # and the defaults round-trip as well (None values, nested sections)
    save_config(GRPORun(), path)
    assert load_config(path) == GRPORun()
    # rewards are written in their short form when they have no options
    assert yaml.safe_load(path.read_text())["rewards"] == {"accuracy": 1.0, "format": 0.2}


def test_overrides_of_dotted_reward_names_and_their_options():
    assert parse_overrides(["rewards.pkg.mod:fn=0.5"]) == {"rewards": {"pkg.mod:fn": 0.5}}
    tree = parse_overrides(["rewards.pkg.mod:fn.alpha=3", "rewards.overlong.max_len=48"])
    assert tree == {"rewards": {"pkg.mod:fn": {"alpha": 3}, "overlong": {"max_len": 48}}}
    cfg = load_config(None, ["rewards.overlong=0.1", "rewards.overlong.max_len=48", "rewards.overlong.buffer=8"])
    assert cfg.rewards["overlong"] == RewardSpec(0.1, {"max_len": 48, "buffer": 8})


def test_misspelt_reward_option_is_named():
    with pytest.raises(ConfigError, match="rewards.overlong: no option 'bufer'; did you mean 'buffer'"):
        load_config(None, ["rewards.overlong=0.1", "rewards.overlong.bufer=8"])
