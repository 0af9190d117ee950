"""Preflight: check the launch environment of a Stage 2 engine before a GPU is booked.

Checks run in the environment the launch will get: a probe script (:mod:`tradelab.grpo.env_probe`) is executed
with ``runner.python``, the plan's PYTHONPATH and working directory. Each check is pass / warn / fail (or skip in
dataset-only mode) with a message that says the fix. The last report is recorded as ``stage2.preflight``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig
from tradelab.grpo import checks as rules
from tradelab.grpo import config_checks
from tradelab.grpo.checks import FAIL, PASS, SKIP, WARN, Check
from tradelab.grpo.engines import base
from tradelab.grpo.engines.interface import Engine
from tradelab.grpo.engines.registry import get_engine
from tradelab.manifest import set_stage2
from tradelab.paths import Workspace
from tradelab.provenance import utc_now

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Check", "PreflightReport", "run_preflight", "run_probe"]

PROBE_SCRIPT = Path(__file__).with_name("env_probe.py")


@dataclass
class PreflightReport:
    """The result of :func:`run_preflight`."""

    market: str
    engine: str
    dataset_only: bool
    checks: list[Check] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    created_at: str = field(default_factory=utc_now)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not any(c.status == FAIL for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def summary(self) -> str:
        """One line per failed check, for error messages."""
        return "\n".join(f"  [{c.name}] {c.message}" for c in self.failures())

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "market": self.market, "engine": self.engine, "dataset_only": self.dataset_only,
            "created_at": self.created_at, "checks": [c.to_dict() for c in self.checks], "plan": self.plan,
            "probe": self.probe, "artifacts": self.artifacts,
        }


def run_probe(plan: base.LaunchPlan, args: list[str], timeout_s: int) -> tuple[dict[str, Any] | None, str]:
    """Run :mod:`env_probe` under the plan's interpreter, environment and cwd; ``(result, error)``."""
    return plan.run_json(PROBE_SCRIPT, args, timeout_s=timeout_s, what="the probe")


def run_preflight(
    root: str | Path, market: str, config: TradelabConfig, *, engine: str, dataset_only: bool,
    python: str | None = None, extra_overrides: list[str] | None = None,
    record: bool = True, plan: base.LaunchPlan | None = None,
) -> PreflightReport:
    """Check everything a launch of ``engine`` needs and record the report in the manifest.

    Args:
        root: Workspace root.
        market: Market name.
        config: Resolved configuration.
        engine: "verl", "soft-grpo" or "local".
        dataset_only: Skip the GPU-side checks (CUDA, GPU count, flash-attn, rollout backend).
        python: Launch interpreter override (else ``runner.python``).
        extra_overrides: Extra Hydra overrides the launch will add.
        record: Write the report to ``stage2.preflight``.
        plan: The launch plan the caller already built for this run; None = build it here (an in-process
            engine has none, and no launch environment to probe).

    Returns:
        The report; ``.ok`` is False when any check failed.
    """
    ws = Workspace.at(root)
    spec = get_engine(engine)
    report = PreflightReport(market=market, engine=engine, dataset_only=dataset_only)
    report.checks.extend(rules.stage1_checks(ws, market))
    report.checks.append(rules.dataset_check(ws, market, config.soft_grpo.preflight.min_val_rows))
    if plan is None:
        plan = spec.build_plan(ws.root, market, config, python=python, extra_overrides=extra_overrides)
    if plan is not None:  # an external launch: probe the environment it describes
        report.plan = plan.to_dict()
        report.checks.extend(_engine_checks(ws, market, config, spec, plan, dataset_only, report))
    if record:
        set_stage2(ws.root, market, "preflight", report.to_dict())
    return report


def _engine_checks(ws: Workspace, market: str, config: TradelabConfig, spec: Engine, plan: base.LaunchPlan,
                   dataset_only: bool, report: PreflightReport) -> list[Check]:
    settings = config.soft_grpo
    checks: list[Check] = spec.plan_checks(ws, market, config, plan)
    if plan.missing:
        checks.append(Check("placeholders", FAIL, "unresolved: " + "; ".join(
            f"{{{k}}} needs {v.removeprefix(base.MISSING_PREFIX)}" for k, v in plan.missing.items())
            + f"; run `python main.py stage1 --market {market}` first"))
    probe, error = run_probe(plan, ["probe"], settings.preflight.probe_timeout_s)
    report.probe = probe
    if probe is None:
        checks.append(Check("launch_python", FAIL, f"cannot probe the launch environment with {plan.python}: "
                            f"{error}; set runner.python in config/phase3_soft_grpo.yaml to a working interpreter"))
        return checks
    checks.append(Check("launch_python", PASS, f"{probe['python']} (Python {probe['python_version']})"))
    checks.extend(rules.probe_checks(probe, plan, settings.runner, dataset_only,
                                     flash_attn_required=spec.flash_attn_required,
                                     soft_thinking_rollout=spec.soft_thinking_rollout))
    if settings.preflight.check_artifacts:
        artifact_checks, report.artifacts = spec.artifact_checks(ws, market, plan,
                                                                 settings.preflight.artifact_timeout_s)
        checks.extend(artifact_checks)
    composed = _compose(spec, plan, probe, settings, checks)
    values = config_checks.effective_values(plan.overrides, composed)
    train_rows = rules.dataset_rows(ws, market, "train")
    checks.append(config_checks.batch_check(values, train_rows, settings.preflight.min_train_batches))
    checks.append(config_checks.context_check(values, spec.context_model_dir(ws, market, plan)))
    checks.append(spec.pitfalls(values))
    checks.append(config_checks.filter_groups_check(values, composed=composed is not None, dialect=plan.dialect))
    checks.append(config_checks.train_order_check(values, rules.dataset_train_order(ws, market),
                                                  settings.dataset.train_order))
    checks.append(rules.cluster_check(settings.runner.nnodes, plan.environment()))
    return checks


def _compose(spec: Engine, plan: base.LaunchPlan, probe: dict[str, Any], settings: Any,
             checks: list[Check]) -> dict | None:
    """Compose the overrides with the launch environment's verl; append the check; return the values."""
    if not settings.preflight.compose_config:
        checks.append(Check("config_compose", SKIP, "preflight.compose_config is false"))
        return None
    if not probe["verl"]["importable"]:
        checks.append(Check("config_compose", SKIP, "verl is not importable, so the config cannot be composed"))
        return None
    found = rules.verl_dialect(probe["verl"], plan.repo_root)
    if found != plan.dialect:
        # Composing with the other dialect's schema would report keys the right verl accepts as unknown.
        checks.append(Check("config_compose", SKIP, f"the launch environment's verl is the {found} dialect, the "
                            f"{plan.engine} engine needs {plan.dialect}; fix the verl check, then re-run preflight"))
        return None
    result, error = run_probe(plan, ["compose", "--", *plan.overrides], settings.preflight.compose_timeout_s)
    checks.append(config_checks.compose_check(result, error, plan, spec.config_key))
    return result["values"] if result is not None and result["ok"] else None
