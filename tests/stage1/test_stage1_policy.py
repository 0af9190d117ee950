"""Fusion policy: prior math, llm_weight=0 == plain MaskablePPO, stored log-probs == re-evaluated log-probs, veto."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3.common.utils import set_random_seed
from prior_reference import prior_numpy
from stage1_fakes import FakeAdvisor, FakeTradingEnv, make_arrays

from tradelab.core import ACTION_IDS
from tradelab.stage1.policy import FusionPolicy, log_prior
from tradelab.stage1.advice import N_ACTIONS, SLOT_SIZE, encode_slots
from tradelab.stage1.wiring import advice_vec_env, make_probe, normalized

PPO_KW = dict(n_steps=32, batch_size=32, n_epochs=2, learning_rate=1e-3, seed=3, device="cpu")


def _stack(config, *, advisor=True, stage1=None, n_envs=2):
    arrays = make_arrays()
    stage1 = stage1 or config.stage1
    fns = [lambda i=i: FakeTradingEnv(arrays, seed=100 + i) for i in range(n_envs)]
    env = advice_vec_env(fns, stage1, source=FakeAdvisor() if advisor else None, interval_bars=3)
    return env, normalized(env, config.ppo)


def test_prior_matches_reference_and_uniform_without_advice() -> None:
    rng = np.random.default_rng(0)
    slots, masks = [], []
    for _ in range(200):
        mask = rng.random(N_ACTIONS) < 0.6
        mask[0] = True
        action = int(rng.integers(N_ACTIONS)) if rng.random() < 0.8 else None
        slots.append(encode_slots(action, float(rng.random()), int(rng.integers(0, 5))))
        masks.append(mask)
    slots, masks = np.stack(slots), np.stack(masks)
    reference = prior_numpy(slots, masks, 0.5)
    got = th.exp(log_prior(th.as_tensor(slots), th.as_tensor(masks), 0.5)).numpy()
    np.testing.assert_allclose(got * masks, reference, atol=1e-5)
    np.testing.assert_allclose(reference.sum(axis=1), 1.0, atol=1e-9)
    no_advice = slots[:, -1] == 0
    np.testing.assert_allclose(reference[no_advice], (masks / masks.sum(1, keepdims=True))[no_advice])


def test_advice_below_floor_or_masked_has_no_effect() -> None:
    masks = np.array([[True, True, True, False, False, False]] * 2)
    slots = np.stack([encode_slots(ACTION_IDS["BUY"], 0.4, 0), encode_slots(ACTION_IDS["MOVE_TO_BE"], 0.9, 0)])
    np.testing.assert_allclose(prior_numpy(slots, masks, 0.5), masks / 3.0)
    strong = prior_numpy(encode_slots(ACTION_IDS["BUY"], 0.9, 0)[None], masks[:1], 0.5)[0]
    assert strong[ACTION_IDS["BUY"]] == pytest.approx(0.9)
    assert strong[ACTION_IDS["HOLD"]] == pytest.approx(0.05)


def test_fused_distribution_follows_the_prior(config) -> None:
    env, vec = _stack(config)
    model = MaskablePPO(FusionPolicy, vec, policy_kwargs={"llm_weight": 2.0, "confidence_floor": 0.5}, **PPO_KW)
    obs = th.as_tensor(vec.reset())
    masks = np.stack(env.env_method("action_masks"))
    fused = model.policy.get_distribution(obs, masks).distribution.probs
    base = model.policy.base_distribution(obs, masks).distribution.probs
    advised = obs[:, -SLOT_SIZE:-2].argmax(dim=1)
    assert bool((obs[:, -1] == 1).all())
    gain = fused.gather(1, advised[:, None]) - base.gather(1, advised[:, None])
    assert bool((gain > 0.05).all())


def _learn(policy, policy_kwargs, config):
    set_random_seed(11)
    env, vec = _stack(config)
    model = MaskablePPO(policy, vec, policy_kwargs=policy_kwargs, **PPO_KW)
    env.probe = make_probe(model.policy, vec)
    model.learn(128)
    taken = [a for e in env.venv.envs for a, _ in e.taken]
    return taken, [p.detach().clone() for p in model.policy.parameters()]


def test_llm_weight_zero_is_plain_maskable_ppo(config) -> None:
    taken_plain, params_plain = _learn("MlpPolicy", {}, config)
    taken_fused, params_fused = _learn(FusionPolicy, {"llm_weight": 0.0, "confidence_floor": 0.5}, config)
    assert taken_plain == taken_fused
    assert len(params_plain) == len(params_fused)
    for a, b in zip(params_plain, params_fused):
        assert th.equal(a, b)
    taken_weighted, _ = _learn(FusionPolicy, {"llm_weight": 1.0, "confidence_floor": 0.5}, config)
    assert taken_weighted != taken_plain, "the comparison must be able to see the prior"


def test_stored_log_probs_equal_reevaluated(config) -> None:
    env, vec = _stack(config)
    model = MaskablePPO(FusionPolicy, vec, policy_kwargs={"llm_weight": 1.5, "confidence_floor": 0.5}, **PPO_KW)
    env.probe = make_probe(model.policy, vec)
    model.learn(64)  # one rollout + update, then collect a fresh rollout with the updated policy
    from stable_baselines3.common.callbacks import CallbackList

    callback = CallbackList([])
    callback.init_callback(model)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buf = model.rollout_buffer
    obs = th.as_tensor(buf.observations.reshape(-1, buf.observations.shape[-1]))
    actions = th.as_tensor(buf.actions.reshape(-1)).long()
    masks = th.as_tensor(buf.action_masks.reshape(-1, N_ACTIONS))
    with th.no_grad():
        _, log_prob, _ = model.policy.evaluate_actions(obs, actions, action_masks=masks)
    stored = th.as_tensor(buf.log_probs.reshape(-1))
    assert bool((obs[:, -1] == 1).any()), "some decisions must carry advice"
    np.testing.assert_allclose(log_prob.numpy(), stored.numpy(), atol=1e-5)
    with th.no_grad():
        _, plain_log_prob, _ = MaskablePPO.policy_aliases["MlpPolicy"].evaluate_actions(
            model.policy, obs, actions, action_masks=masks
        )
    assert not np.allclose(plain_log_prob.numpy(), stored.numpy(), atol=1e-3)


def test_vetoed_entries_are_never_taken(config) -> None:
    stage1 = config.stage1.model_copy(update={"veto": config.stage1.veto.model_copy(
        update={"max_consecutive_losses": 1, "loss_streak_pause_bars": 1000})})
    env, vec = _stack(config, stage1=stage1)
    model = MaskablePPO(FusionPolicy, vec, policy_kwargs={"llm_weight": 1.0, "confidence_floor": 0.5}, **PPO_KW)
    model.learn(320)
    decisions = [d for fake in env.venv.envs for d in fake.decisions]
    vetoed = [name for name, losses, flat in decisions if flat and losses >= 1]
    assert len(vetoed) > 10, "the run must visit vetoed states for the test to mean anything"
    assert not {"BUY", "SELL"} & set(vetoed)
    assert {"BUY", "SELL"} & {name for name, losses, flat in decisions if flat and losses == 0}
    assert env.stats.vetoes >= len(vetoed)


def test_hold_advice_while_flat_does_not_collapse_entries() -> None:
    """The collapse: PPO prefers BUY, the advisor says HOLD with 0.7 while flat; the fused argmax must stay BUY.

    Before HOLD-while-flat counted as an abstention, log(prior) added log(0.7 / 0.15) = 1.54 to HOLD's logit, so any
    entry PPO preferred by less than that was never taken (0 hybrid trades where PPO alone made 5.5 per episode).
    """
    flat = th.tensor([[True, True, True, False, False, False]])
    in_trade = th.tensor([[True, False, False, True, True, False]])
    hold = th.as_tensor(encode_slots(ACTION_IDS["HOLD"], 0.7, 0)[None])
    logits = th.tensor([[0.0, 0.5, 0.0, 0.0, 0.0, 0.0]])
    fused_flat = (logits + log_prior(hold, flat, 0.55)).masked_fill(~flat, -1e9)
    assert int(fused_flat.argmax()) == ACTION_IDS["BUY"]
    np.testing.assert_allclose(th.exp(log_prior(hold, flat, 0.55))[0, :3].numpy(), [1 / 3] * 3, atol=1e-6)
    np.testing.assert_allclose(prior_numpy(hold.numpy(), flat.numpy(), 0.55)[0, :3], [1 / 3] * 3)
    # In a trade HOLD is a view (keep the stop and trail as they are): it still pulls.
    in_trade_prior = th.exp(log_prior(hold, in_trade, 0.55))[0]
    assert float(in_trade_prior[ACTION_IDS["HOLD"]]) == pytest.approx(0.7, abs=1e-6)
    # A directional answer while flat still moves the policy.
    sell = th.as_tensor(encode_slots(ACTION_IDS["SELL"], 0.7, 0)[None])
    assert int((logits + log_prior(sell, flat, 0.55)).masked_fill(~flat, -1e9).argmax()) == ACTION_IDS["SELL"]
