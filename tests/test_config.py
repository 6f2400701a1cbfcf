"""Config: YAML + dotted overrides, validated up front with errors that name the key."""

import pytest
import yaml

from r1kit.config import Config, ConfigError, load_config, parse_overrides, save_config, to_dict


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
    with pytest.raises(ConfigError, match=r"'zzzz'.*valid keys: data, grpo, model, output_dir"):
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


def test_reward_override_changes_one_weight_and_keeps_the_others(base_yaml):
    cfg = load_config(base_yaml, ["rewards.accuracy=2.0"])
    assert cfg.rewards == {"accuracy": 2.0, "soft_format": 0.5}
    cfg = load_config(base_yaml, ["rewards.tag_count=0.1"])
    assert cfg.rewards == {"accuracy": 1.0, "soft_format": 0.5, "tag_count": 0.1}
    # without a rewards section in the file the defaults are what gets overridden
    default = Config().rewards
    cfg = load_config(None, ["rewards.accuracy=2.0"])
    assert cfg.rewards == {**default, "accuracy": 2.0} and len(cfg.rewards) == len(default)


def test_rewards_in_the_file_replace_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rewards: {soft_format: 1.0}\n")
    assert load_config(path).rewards == {"soft_format": 1.0}


def test_unknown_reward_names_the_closest(base_yaml):
    with pytest.raises(ConfigError, match=r"rewards.acuracy: unknown reward.*did you mean 'accuracy'"):
        load_config(base_yaml, ["rewards.acuracy=1.0"])
    with pytest.raises(ConfigError, match=r"rewards.no_such_mod:fn: .*cannot import module 'no_such_mod'"):
        load_config(None, ["rewards={'no_such_mod:fn': 1.0}"])
    with pytest.raises(ConfigError, match=r"rewards.accuracy: expected a number"):
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
        ],
    )
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert to_dict(again) == to_dict(cfg)
    # and the defaults round-trip as well (None values, nested sections)
    save_config(Config(), path)
    assert load_config(path) == Config()


def test_overrides_of_dotted_reward_names_and_their_options():
    from r1kit.config import parse_overrides

    tree = parse_overrides(["rewards.pkg.mod:fn=0.5", "reward_options.overlong.max_len=48", "reward_options.pkg.mod:fn.alpha=3"])
    assert tree == {"rewards": {"pkg.mod:fn": 0.5}, "reward_options": {"overlong": {"max_len": 48}, "pkg.mod:fn": {"alpha": 3}}}
    cfg = load_config(None, ["rewards.overlong=0.1", "reward_options.overlong.max_len=48", "reward_options.overlong.buffer=8"])
    assert cfg.rewards["overlong"] == 0.1 and cfg.reward_options == {"overlong": {"max_len": 48, "buffer": 8}}


def test_misspelt_reward_option_is_named():
    with pytest.raises(ConfigError, match="no option 'bufer'; did you mean 'buffer'"):
        load_config(None, ["rewards.overlong=0.1", "reward_options.overlong.bufer=8"])
