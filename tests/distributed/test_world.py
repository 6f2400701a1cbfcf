"""r1kit.distributed on one process, and the checks a launch of several meets before any work."""

import pytest
import torch

from r1kit.config import load_config
from r1kit.distributed import World, gather_lists, prompt_seed, reduce_metrics, shard, shard_bounds
from r1kit.grpo.train import TrainingError, check_world, per_prompt_seeding


@pytest.mark.parametrize("n,size", [(4, 2), (5, 2), (7, 3), (2, 4), (0, 2), (8, 8)])
def test_shards_are_contiguous_cover_everything_and_differ_by_at_most_one(n, size):
    bounds = [shard_bounds(n, World(r, size)) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    items = list(range(n))
    assert [x for r in range(size) for x in shard(items, World(r, size))] == items


def test_one_process_is_the_identity():
    w = World()
    assert not w.distributed and w.is_main and w.engine == "none"
    assert gather_lists([1, 2], w) == [1, 2]
    assert reduce_metrics({"loss": 1.5, "x/max": 2.0}, w) == {"loss": 1.5, "x/max": 2.0}


def test_prompt_seeds_depend_only_on_their_position():
    assert prompt_seed(0, 3, 0, 1) == prompt_seed(0, 3, 0, 1)
    seeds = {prompt_seed(s, step, r, i) for s in (0, 1) for step in (1, 2) for r in (0, 1) for i in range(4)}
    assert len(seeds) == 32 and all(0 <= x < 2**63 for x in seeds)


def test_seeding_modes():
    cfg = load_config(None, [])
    assert cfg.rollout.seeding == "auto"
    assert not per_prompt_seeding(cfg, World()) and per_prompt_seeding(cfg, World(0, 2))
    assert per_prompt_seeding(load_config(None, ["rollout.seeding=per_prompt"]), World())
    assert not per_prompt_seeding(load_config(None, ["rollout.seeding=stream"]), World(0, 2))


@pytest.mark.parametrize("overrides,env,message", [
    (["train.prompts_per_step=3"], {}, "train.prompts_per_step=3 does not split into whole groups over 2 processes "
                                       "(use a multiple of 2, e.g. 4)"),
    (["train.prompts_per_step=1"], {}, "2 processes but train.prompts_per_step=1: each process needs at least one prompt"),
])
def test_launches_that_cannot_work_are_refused(overrides, env, message, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(TrainingError) as e:
        check_world(load_config(None, ["train.prompts_per_step=2", *overrides]), World(0, 2))
    assert message in str(e.value)


def test_engine_comes_from_the_launch_environment(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert World(0, 2).engine == "ddp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert World(0, 2).engine == "fsdp" and World().engine == "none"
    for backend in ("hf", "vllm", "vllm-server"):  # FSDP2 generates with each
        check_world(load_config(None, ["train.prompts_per_step=2", f"rollout.backend={backend}"]), World(0, 2))


def test_per_prompt_seeds_make_a_prompts_completions_independent_of_the_rest(tok, model):
    """The HF backend with seeds: a prompt's G completions are the same alone or after other
    work on torch's global RNG, and differ with another seed."""
    from r1kit.rollout.hf import generate_groups

    ids = [[1, 5, 7, 9]]
    a, _ = generate_groups(model, ids, 4, 6, [tok.eos_token_id], tok.pad_token_id, 1.0, 1.0, 0, [11])
    torch.rand(100)
    b, _ = generate_groups(model, ids, 4, 6, [tok.eos_token_id], tok.pad_token_id, 1.0, 1.0, 0, [11])
    c, _ = generate_groups(model, ids, 4, 6, [tok.eos_token_id], tok.pad_token_id, 1.0, 1.0, 0, [12])
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(r) for r in a.tolist()}) > 1  # the G rows have seeds of their own
