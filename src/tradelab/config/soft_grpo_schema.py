"""``config/phase3_soft_grpo.yaml``: Stage 2 dataset export, preflight and the verl / SofT-GRPO runner."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tradelab.config.base import StrictModel

PLACEHOLDERS: tuple[str, ...] = (
    "train_files", "val_files", "model_path", "adapter_path", "output_dir", "market", "tensorboard_dir", "n_gpus",
    "nnodes", "lora_rank", "lora_alpha", "reward_path", "reward_name", "repo_root", "experiment_name",
)
"""Names that may appear as ``{name}`` in engine ``args`` / ``args_overlay``; the runner fills them in."""


class RewardWeightsConfig(StrictModel):
    """The reward's weights (:mod:`tradelab.core.reward`), written into every exported row's ground truth."""

    format_bonus: float = Field(description="Added to every well-formed, allowed answer.")
    r_clip: float = Field(gt=0, description="Outcome R-multiples are clipped to +/- this and scaled into [-1, 1].")
    calibration_weight: float = Field(description="Weight of the Brier-style confidence term (in [-1, 1]).")
    hold_miss_weight: float = Field(description="HOLD while flat costs this times the best entry's R when it won.")
    hold_avoid_weight: float = Field(description="HOLD while flat earns this times the loss avoided when all lost.")
    neutral_confidence: float = Field(ge=0, le=1, description="Confidence assumed when the answer gives none.")
    invalid_score: float = Field(description="Fixed score of a malformed, disallowed or blocklisted answer.")


class DatasetConfig(StrictModel):
    """How Stage 1 experience records become the GRPO train / val parquet files."""

    min_reward: float | None = Field(
        description="Drop experiences whose outcome.reward is below this; null keeps every reward."
    )
    min_success_pnl: float = Field(
        description="An experience is a success when outcome.pnl (USD) >= this; the rest are failures."
    )
    include_failures: bool = Field(description="Keep failures (pnl below min_success_pnl); false drops them.")
    decisions: Literal["all", "entries"] = Field(
        description="all: every resolved record; entries: only records asked while flat with BUY and SELL allowed."
    )
    max_samples: int | None = Field(ge=1, description="Keep at most this many (the latest) rows; null = no cap.")
    split: Literal["chronological", "random"] = Field(
        description="chronological: val is the latest period; random: a seeded shuffle picks val rows."
    )
    val_fraction: float = Field(gt=0, le=0.5, description="Fraction of the kept rows that go to validation.")
    train_order: Literal["time", "sides_balanced"] = Field(
        description="Order of the train file's rows. time: as kept (the engines shuffle them). sides_balanced: every "
                    "stretch of rows holds as many where BUY beat SELL in hindsight as the reverse (the smaller side "
                    "repeated), the rest at their share, and the external engines read them in order "
                    "(data.shuffle=False): the local engine's grpo_local.optim.prompt_draw: sides_balanced, for "
                    "verl and the fork (tradelab.grpo.train_order)."
    )
    seed: int = Field(ge=0, description="Seed of the random split and of the sides_balanced train order.")
    samples_rows: int = Field(ge=0, description="Rows copied to stage2_samples.jsonl for people to read.")
    blocklist: list[str] = Field(
        description="Answers containing any of these substrings score the malformed penalty, in every engine."
    )
    reward_weights: RewardWeightsConfig = Field(
        description="The reward's weights; they travel in each row's ground truth with the blocklist."
    )
    reasoning_instruction: str | None = Field(
        description="Appended to each Stage 2 system message: ask for a short <think>...</think> block before the "
                    "answer line (soft thinking ends at </think>); null exports the prompts unchanged."
    )


class RunnerConfig(StrictModel):
    """The launch interpreter and the cluster shape shared by both engines."""

    python: str | None = Field(
        description="Interpreter that runs the engine and the preflight probes; null = the one running tradelab."
    )
    n_gpus_per_node: int | None = Field(
        ge=1, description="GPUs per node ({n_gpus}); null = every visible GPU (preflight warns when some stay idle)."
    )
    nnodes: int = Field(ge=1, description="Nodes in the Ray cluster ({nnodes}); >1 needs RAY_ADDRESS set.")


class EngineConfig(StrictModel):
    """One external engine: what to run, with which Hydra overrides and environment."""

    mode: Literal["python", "script"] = Field(
        description="python: `<runner.python> -m <module> <args>`; script: `bash <repo_root>/<script> <args>`."
    )
    module: str = Field(description="Module run in python mode, e.g. verl.trainer.main_ppo.")
    script: str | None = Field(description="Launch script in script mode, relative to repo_root (or absolute).")
    cwd: Literal["workspace", "output_dir", "repo_root"] = Field(
        description="Working directory of the launch (Hydra writes outputs/ there)."
    )
    args: list[str] = Field(description="Hydra overrides (key=value), with {placeholders} the runner fills in.")
    args_overlay: list[str] = Field(
        description="Hydra overrides laid over args (same key replaces the arg): how a profile resizes the launch "
        "(the smoke profile's two-step pod smoke test); [] = args alone."
    )
    env: dict[str, str] = Field(description="Extra environment variables for the launch (values may use placeholders).")


class EnginesConfig(StrictModel):
    """The two external engines (the local engine lives in config/grpo_local.yaml)."""

    verl: EngineConfig = Field(description="PyPI verl >= 0.9: standard GRPO with LoRA from stage1_lora.")
    soft_grpo: EngineConfig = Field(description="The SofT-GRPO repository's verl 0.4.x fork, full weights.")


class PreflightConfig(StrictModel):
    """Thresholds and time limits of the preflight checks."""

    probe_timeout_s: int = Field(ge=5, description="Time limit of the launch-environment probe subprocess.")
    compose_timeout_s: int = Field(ge=10, description="Time limit of the Hydra config composition subprocess.")
    compose_config: bool = Field(description="Compose the engine config with verl's Hydra (catches unknown keys).")
    min_train_batches: int = Field(ge=1, description="Train rows must be >= train_batch_size x this.")
    min_val_rows: int = Field(ge=0, description="Validation rows below this are a warning.")
    check_artifacts: bool = Field(
        description="Load the engine's model folder under the launch interpreter and compare it with tradelab's."
    )
    artifact_timeout_s: int = Field(ge=10, description="Time limit of loading the model under the launch interpreter.")


class SoftGrpoConfig(StrictModel):
    """Stage 2 settings."""

    repo_root: str = Field(
        description="SofT-GRPO repository (relative to --root or absolute); $SOFT_GRPO_REPO_ROOT, relative to the "
                    "current directory, overrides it."
    )
    dataset: DatasetConfig = Field(description="Experience -> parquet export.")
    runner: RunnerConfig = Field(description="Launch interpreter and cluster shape.")
    engines: EnginesConfig = Field(description="Per-engine commands.")
    preflight: PreflightConfig = Field(description="Preflight thresholds.")

    @model_validator(mode="after")
    def _script_mode_has_script(self) -> "SoftGrpoConfig":
        for name in ("verl", "soft_grpo"):
            engine: EngineConfig = getattr(self.engines, name)
            if engine.mode == "script" and not engine.script:
                raise ValueError(f"engines.{name}.mode is 'script' but engines.{name}.script is null; set a script")
        return self
