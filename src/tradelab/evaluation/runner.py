"""Drive agents through the env on shared episode starts and record what they did.

Every agent of a seed is reset to the same start bars with the same reset seed, so all of them trade the same bars;
:func:`run_seed` checks that each agent's first bar really is the requested start and raises otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tradelab.errors import StageFailed
from tradelab.evaluation.advisor_metrics import advice_record
from tradelab.evaluation.agents import Agent, advice_to_dict
from tradelab.evaluation.episode import EpisodeLog

START_OPTION = "start_index"
"""``env.reset(options={START_OPTION: bar})`` starts an episode at that bar."""

Progress = Callable[[int, int], None]


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of one episode of one evaluation seed (the same for every agent)."""
    return seed * 100_003 + episode


def reset_at(env: Any, start_index: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """Reset ``env`` so its first decision bar is ``start_index``.

    Raises:
        StageFailed: The env started somewhere else (it ignored the requested start).
    """
    obs, info = env.reset(seed=seed, options={START_OPTION: int(start_index)})
    if int(info["bar_index"]) != int(start_index):
        raise StageFailed(
            f"env started at bar {info['bar_index']} instead of the requested {start_index}; evaluation needs "
            f"env.reset(options={{'{START_OPTION}': bar}}) to start episodes where asked"
        )
    return obs, info


def _events(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    bar = int(info["bar_index"])
    return [{"bar_index": bar, **event} for event in info.get("events") or ()]


def run_episode(env: Any, agent: Agent, log: EpisodeLog, *, reset_seed: int) -> EpisodeLog:
    """Play one episode from ``log.start_index`` to termination or truncation, filling ``log``.

    Args:
        env: The holdout env (gymnasium API plus ``action_masks()``).
        agent: The agent to drive; reset here.
        log: An empty log naming the agent, seed, episode and start.
        reset_seed: Seed passed to ``env.reset``.
    """
    agent.reset()
    obs, info = reset_at(env, log.start_index, reset_seed)
    log.record_state(info)
    while True:
        mask = np.asarray(env.action_masks(), dtype=bool)
        action_id, advice = agent.act(obs, info, mask)
        action_id = int(action_id)
        if advice is not None:
            log.advice.append(advice_record(int(info["bar_index"]), advice_to_dict(advice), mask, action_id))
        log.actions.append(action_id)
        obs, _reward, terminated, truncated, info = env.step(action_id)
        log.record_state(info)
        log.events.extend(_events(info))
        if terminated or truncated:
            return log


def run_seed(
    env: Any, agents: Mapping[str, Agent], starts: Sequence[int], *, seed: int,
    on_episode: Callable[[], None] | None = None,
) -> dict[str, list[EpisodeLog]]:
    """Run every agent over the same episode starts.

    Args:
        env: One env reused by every agent (each episode starts from a reset).
        agents: Name -> agent.
        starts: Start bars, shared by all agents.
        seed: Evaluation seed (reset seeds derive from it).
        on_episode: Called after every finished episode (progress).

    Returns:
        Name -> the agent's logs, one per start, in the order of ``starts``.

    Raises:
        StageFailed: Two agents saw different first bars for the same episode.
    """
    logs: dict[str, list[EpisodeLog]] = {}
    for name, agent in agents.items():
        logs[name] = []
        for episode, start in enumerate(starts):
            log = EpisodeLog(agent=name, seed=seed, episode=episode, start_index=int(start))
            logs[name].append(run_episode(env, agent, log, reset_seed=episode_seed(seed, episode)))
            if on_episode:
                on_episode()
    first_bars = {name: [log.bars[0] for log in agent_logs] for name, agent_logs in logs.items()}
    if len({tuple(bars) for bars in first_bars.values()}) > 1:
        raise StageFailed(f"agents started on different bars for seed {seed}: {first_bars}")
    return logs
