"""The GRPO stage's config: its two own sections (the algorithm, the optimisation loop) and its
root, ``GRPORun``, which composes them with the shared sections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1kit.config.eval import TrainEvalSection
from r1kit.config.parse import ConfigError, Section, at_least, choice, positive
from r1kit.config.sections import (
    DataSection,
    ModelSection,
    RewardRuntimeSection,
    RewardSpec,
    RolloutSection,
    check_rewards,
)


@dataclass
class GRPOSection(Section):
    # A preset of r1kit.grpo.loss.LOSS_TYPES: "grpo", "bnpo", "dapo", "dr_grpo".
    loss_type: str = choice("grpo", "r1kit.grpo.loss:LOSS_TYPES")
    # Advantage scale: "group" (GRPO), "batch", "none" (Dr. GRPO).
    scale: str = choice("group", "r1kit.grpo.advantages:SCALES")
    epsilon_low: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.0
    # KL(pi || pi_ref) estimator per token: "k1" (log-ratio), "k2" (half its square), "k3"
    # (exp(-r) + r - 1, DeepSeekMath's), all on the clamped log-ratio r = logp - ref.
    kl_estimator: str = choice("k3", "r1kit.grpo.loss:KL_ESTIMATORS")
    # mu: optimisation passes over each generated batch.
    num_iterations: int = 1
    mask_truncated: bool = False
    # DAPO dynamic sampling: drop groups with all-equal rewards and refill.
    dynamic_sampling: bool = False
    max_resample_rounds: int = 2
    # Correction for the gap between the rollout engine's log-probs and the learner's (vLLM
    # backends; the HF backend samples from the learner's own model): weight each token's loss by
    # w = exp(learner old log-prob - sampler log-prob), per token or per sequence, truncated to
    # at most is_cap ("*_truncate") or zeroed above it ("*_mask"); "none" turns it off.
    is_correction: str = choice("token_truncate", "r1kit.grpo.loss:IS_MODES")
    is_cap: float = 2.0
    # The ratio in the surrogate: "token" (PPO/GRPO), "sequence" (GSPO: one ratio per sequence,
    # exp of its mean log-ratio), "sequence_token" (GSPO-token: that value, per-token gradients).
    importance_sampling_level: str = choice("token", "r1kit.grpo.loss:IS_LEVELS")
    # SAPO's gate temperatures (loss_type: sapo), for A > 0 and A < 0 (TRL's defaults).
    sapo_tau_pos: float = 1.0
    sapo_tau_neg: float = 1.05
    # Dual-clip PPO: for A < 0 the objective is at least c * A (e.g. 3.0); null: off.
    dual_clip_c: float | None = None
    # High-entropy token selection: only the tokens in the top fraction of the step by entropy
    # (of the sampling policy) carry the policy gradient (0.2: the "80/20" result); the KL term
    # keeps every token. 1.0: off.
    top_entropy_quantile: float = 1.0

    def check(self) -> None:
        at_least(self, 0, "beta", "epsilon_low", "max_resample_rounds")
        at_least(self, 1, "num_iterations")
        positive(self, "is_cap", "top_entropy_quantile")
        if self.top_entropy_quantile > 1.0:
            raise ConfigError(f"top_entropy_quantile: a fraction in (0, 1], got {self.top_entropy_quantile}")
        from r1kit.grpo.loss import check_objective

        try:
            check_objective(self.loss_type, self.importance_sampling_level, self.dual_clip_c,
                            self.sapo_tau_pos, self.sapo_tau_neg, prefix="grpo.")
        except ValueError as e:  # names every key in full; the parser puts the section before the first
            raise ConfigError(str(e).removeprefix("grpo.")) from e


@dataclass
class OptimSection(Section):
    """The optimiser and LR schedule, the same keys in every training stage's ``train:``."""

    lr: float = 1e-6
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    # One of r1kit.schedules.SCHEDULES ("constant", "linear", "cosine", "multistep"), each
    # after warmup_steps of linear warmup.
    lr_schedule: str = choice("constant", "r1kit.schedules:SCHEDULES")
    warmup_steps: int = 0
    # multistep: fractions of training after which the LR is lr_factors[i] x its maximum.
    lr_milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])
    lr_factors: list[float] = field(default_factory=lambda: [0.316, 0.1])
    max_grad_norm: float = 1.0
    # A checkpoint every save_every optimizer steps (0: none); the last keep_last stay.
    save_every: int = 0
    keep_last: int = 2
    tensorboard: bool = False
    progress: bool = True

    def check(self) -> None:
        at_least(self, 1, "keep_last")
        at_least(self, 0, "save_every", "warmup_steps")
        positive(self, "lr")
        if len(self.lr_milestones) != len(self.lr_factors):
            raise ConfigError(
                f"lr_factors: one factor per milestone, got {len(self.lr_factors)} for {len(self.lr_milestones)}"
            )
        if any(not 0 < m <= 1 for m in self.lr_milestones) or self.lr_milestones != sorted(self.lr_milestones):
            raise ConfigError(f"lr_milestones: increasing fractions of training in (0, 1], got {self.lr_milestones}")
        if any(f < 0 for f in self.lr_factors):
            raise ConfigError(f"lr_factors: must be >= 0, got {self.lr_factors}")


@dataclass
class TrainSection(OptimSection):
    max_steps: int = 100
    # Prompts per step (P); each gets rollout.group_size completions.
    prompts_per_step: int = 4
    # Sequences per forward/backward; gradients accumulate over the batch.
    micro_batch_size: int = 8
    # > 0: micro-batches of rows of similar completion length instead, each at most this many
    # padded tokens, rows x (longest prompt + longest completion) (r1kit.grpo.micro.by_length).
    micro_batch_tokens: int = 0
    samples_every: int = 1
    # samples.jsonl gets the highest- and lowest-reward completion of each logged step, or all.
    log_all_samples: bool = False
    # Rewards scored every step for the metrics only (weight 0 when not trained on): `accuracy`
    # gives metrics.jsonl its accuracy and correct-but-malformed diagnostics. [] scores none.
    diagnostic_rewards: list[str] = field(default_factory=lambda: ["accuracy"])
    # Tokens per chunk when computing log-probs (bounds the [chunk, V] float32 buffer).
    logit_chunk: int = 1024
    # Project onto the vocabulary logit_chunk tokens at a time, recomputed in the backward pass:
    # no [N, T, V] logits tensor (r1kit.grpo.lm_head). Off, or under FSDP2 / ZeRO-3, or for a
    # head that is not a plain linear layer: the model's own logits, reduced in chunks.
    chunked_head: bool = True

    def check(self) -> None:
        super().check()
        at_least(self, 1, "prompts_per_step", "micro_batch_size", "logit_chunk")
        at_least(self, 0, "max_steps", "samples_every", "micro_batch_tokens")


def _default_rewards() -> dict[str, RewardSpec]:
    return {"accuracy": RewardSpec(1.0), "format": RewardSpec(0.2)}


@dataclass
class GRPORun(Section):
    """The root of ``r1kit grpo CONFIG``: shared sections plus GRPO's own."""

    stage: str = "grpo"
    # The run's name in plots, reports and legends; None: the output directory's name.
    name: str | None = None
    output_dir: str = "runs/grpo"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    # Reward name -> weight, or -> {weight: w, option: value, ...}; the total reward is the
    # weighted sum (c1*r1 + c2*r2 + ...), options are keyword arguments of that reward.
    rewards: dict[str, RewardSpec] = field(default_factory=_default_rewards)
    reward_runtime: RewardRuntimeSection = field(default_factory=RewardRuntimeSection)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    train: TrainSection = field(default_factory=TrainSection)
    # Held-out evaluation every eval.every steps and after the last (when eval.datasets is set).
    eval: TrainEvalSection = field(default_factory=TrainEvalSection)
    # Published numbers this recipe should reach (see configs/recipes/): `r1kit eval` prints the
    # delta, `r1kit plot --reference` draws them.
    reference: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.stage != "grpo":
            raise ConfigError(f"stage: this is the GRPO config, got stage '{self.stage}'")
        if self.rollout.group_size < 2:
            raise ConfigError("rollout.group_size: GRPO needs at least 2 completions per prompt")
        if self.rollout.async_steps and self.rollout.backend == "hf":
            raise ConfigError(
                f"rollout.async_steps={self.rollout.async_steps} needs a rollout engine with its own weights "
                "(rollout.backend: vllm or vllm-server): rollout.backend=hf generates with the weights the learner updates"
            )
        if not self.rewards:
            raise ConfigError("rewards: at least one reward with a weight is needed")
        check_rewards(self.rewards)
        try:
            check_rewards({name: RewardSpec(0.0) for name in self.train.diagnostic_rewards if name not in self.rewards})
        except ConfigError as e:
            raise ConfigError(f"train.diagnostic_rewards: {str(e).removeprefix('rewards.')}") from None

    @property
    def reward_weights(self) -> dict[str, float]:
        return {name: spec.weight for name, spec in self.rewards.items()}

    @property
    def reward_options(self) -> dict[str, dict]:
        return {name: spec.options for name, spec in self.rewards.items() if spec.options}
