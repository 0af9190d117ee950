"""``config/grpo_local.yaml``: the single-process local GRPO / SofT-GRPO engine (ARCHITECTURE.md §10)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tradelab.config.base import StrictModel


class LocalRolloutConfig(StrictModel):
    """How each prompt's group of answers is sampled."""

    group_size: int = Field(ge=2, le=64, description="Answers sampled per prompt (GRPO group size n).")
    temperature: float = Field(gt=0, le=5, description="Sampling temperature T applied to the logits.")
    top_k: int = Field(ge=0, description="Discrete sampling keeps the k most likely tokens; 0 disables the filter.")
    top_p: float = Field(gt=0, le=1, description="Nucleus filter for sampling; 1.0 disables it.")
    max_new_tokens: int = Field(ge=1, le=4096, description="Hard cap on generated tokens per answer.")
    max_prompt_tokens: int = Field(ge=8, description="Longest prompt (chat-templated tokens) accepted.")
    prompt_overflow: Literal["truncate", "reject"] = Field(
        description="A longer prompt is cut to its last max_prompt_tokens tokens (truncate) or dropped (reject)."
    )


class LocalSoftConfig(StrictModel):
    """SofT-GRPO soft-thinking settings (used when mode is 'soft')."""

    top_k: int = Field(ge=2, le=64, description="Soft slots K: the K most likely tokens mixed into each input.")
    gumbel_softmax_temperature: float = Field(gt=0, description="tau in y = softmax(g'/tau), the mixture weights.")
    noise_factor: float = Field(ge=0, description="lambda in g' = log(q + 1e-6) + lambda * g.")
    noise_min: float = Field(description="Lower clamp of the Gumbel noise g and of epsilon in the log-density.")
    noise_max: float = Field(description="Upper clamp of the Gumbel noise g and of epsilon in the log-density.")
    think_start_marker: str = Field(
        description="Text whose tokens open the thinking part (soft steps follow); '' = thinking starts at once."
    )
    think_end_marker: str = Field(description="Text whose tokens end the thinking part; decoding turns discrete.")
    max_think_tokens: int = Field(ge=0, description="Soft steps allowed before decoding turns discrete anyway.")

    @model_validator(mode="after")
    def _clamp_order(self) -> "LocalSoftConfig":
        if self.noise_min >= self.noise_max:
            raise ValueError(f"noise_min ({self.noise_min}) must be below noise_max ({self.noise_max})")
        return self


class LocalOptimConfig(StrictModel):
    """Optimisation and the GRPO/PPO loss."""

    steps: int = Field(ge=1, description="Optimizer rounds (one rollout batch each).")
    prompts_per_step: int = Field(ge=1, description="Prompts drawn per step; each yields group_size answers.")
    prompt_draw: Literal["uniform", "sides_balanced"] = Field(
        description="How a step's prompts are drawn from the training split: 'uniform' = at random; 'sides_balanced' "
        "= as many rows where BUY beat SELL in hindsight as rows where SELL beat BUY (an odd count's extra one on a "
        "random side), the other rows (tied, a side blocked) in their share of the split, so a step's batch cannot "
        "push every answer towards the side its few prompts happened to favour."
    )
    grad_accum: int = Field(ge=1, description="Micro-batches per update; the step's sequences are split this way.")
    ppo_epochs: int = Field(ge=1, le=16, description="Updates over each rollout batch (ratios move after the first).")
    lr: float = Field(gt=0, description="AdamW learning rate for the LoRA weights.")
    weight_decay: float = Field(ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(ge=0, description="Linear learning-rate warm-up, in optimizer updates.")
    max_grad_norm: float = Field(gt=0, description="Global gradient-norm clip before each update.")
    clip_eps: float = Field(gt=0, lt=1, description="PPO ratio clip epsilon.")
    dual_clip: float = Field(gt=1, description="Dual-clip bound c on the loss of negative-advantage tokens.")
    kl_coef: float = Field(ge=0, description="Weight of the k3 KL to the reference (adapter disabled); 0 skips it.")


class LocalDynamicSamplingConfig(StrictModel):
    """DAPO dynamic sampling: groups whose answers all score the same are dropped and the batch is refilled."""

    enabled: bool = Field(
        description="Drop zero-variance groups and draw more prompts until the batch is full (false: train on "
                    "every sampled group)."
    )
    max_rounds: int = Field(
        ge=1, le=64, description="Most sampling rounds per step, the first included (each draws prompts_per_step "
        "prompts); at the cap the step trains on the groups it has, and makes no update with none."
    )


class LocalRunConfig(StrictModel):
    """Checkpointing and validation cadence."""

    checkpoint_every: int = Field(
        ge=0, description="Save adapter + optimizer + RNG every N steps; 0 = only the final adapter."
    )
    val_every: int = Field(ge=0, description="Validate every N steps (and at step 0 and the end); 0 = start/end only.")
    val_prompts: int = Field(ge=1, description="Validation prompts taken (in order) from stage2_val.parquet.")
    val_samples: int = Field(ge=1, description="Answers per validation prompt.")
    val_greedy: bool = Field(description="Discrete validation decodes greedily (else samples with a fixed seed).")
    val_decoding: Literal["discrete", "rollout"] = Field(
        description="'discrete': decode as the advisor does; 'rollout': decode as the run samples (soft thinking in "
        "soft mode, always sampled)."
    )
    hand_on: Literal["last", "best_validation"] = Field(
        description="The adapter the run publishes: 'last' = the final step's; 'best_validation' = the one with the "
        "highest validation reward among the validated steps, step 0 (the adapter the run started from) included, "
        "the earliest on a tie."
    )
    hand_on_reward: Literal["mean", "sides_balanced"] = Field(
        description="The validation figure 'best_validation' ranks steps by: 'mean' = the mean reward "
        "(val_reward_mean); 'sides_balanced' = the mean with the rows where BUY beat SELL in hindsight and those where "
        "SELL beat BUY weighted equally (val_reward_balanced), so a validation split that leans to one side cannot "
        "choose a step that merely leans with it."
    )


class LocalGuardConfig(StrictModel):
    """Safety guards and dataset integrity."""

    nan_max_skips: int = Field(ge=0, description="Steps with a NaN/inf loss are skipped; the run aborts after more.")
    allow_dataset_hash_mismatch: bool = Field(
        description="Proceed (with a logged warning) when a parquet's SHA-256 differs from dataset_metadata.json."
    )


class GrpoLocalConfig(StrictModel):
    """Local engine settings."""

    mode: Literal["soft", "discrete"] = Field(description="'soft' (SofT-GRPO) or 'discrete' (standard GRPO) rollouts.")
    seed: int = Field(ge=0, description="Seed for prompt order, rollouts and training.")
    deterministic: bool = Field(description="Force deterministic torch algorithms (slower on GPU).")
    cpu_threads: int = Field(
        ge=0, description="torch intra-op CPU threads during the run (0 = torch's default); restored afterwards."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        description="'auto' takes CUDA when available, else CPU; weights dtype follows llm.dtype."
    )
    rollout: LocalRolloutConfig = Field(description="Sampling of each group.")
    dynamic_sampling: LocalDynamicSamplingConfig = Field(description="DAPO dynamic sampling of groups.")
    soft: LocalSoftConfig = Field(description="Soft-thinking (SofT-GRPO) settings.")
    optim: LocalOptimConfig = Field(description="Optimiser and loss.")
    run: LocalRunConfig = Field(description="Checkpoint and validation cadence.")
    guards: LocalGuardConfig = Field(description="Guards and dataset integrity.")
