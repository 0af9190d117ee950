"""Advisor prompts: a system message and a user message rendered from the market context at the decision bar.

Only the :class:`~tradelab.core.context.MarketContext` keys are read, and the context itself holds nothing after the
decision bar, so no prompt can carry a forward value (the experience record's ``forward`` window never gets here).
Numbers are rounded on purpose: short prompts are cheap to generate thousands of times, and coarse values are what
the response cache keys on. Templates come from ``config/llm.yaml`` (``prompts``): the full template for the embedded
tiny advisor, whose tokenizer was trained on it, and a compact one for real tokenizers, which spell numbers digit by
digit (a price such as 18234.25 is eight SmolLM2 tokens), so every digit left out is prefill saved on every query.
The prompt is what the advisor sees, nothing more: the reward and the hindsight labels score the record's ground
truth (forward window, position, contract, rules), which no template changes. Pure Python.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from tradelab.core.context import MarketContext

if TYPE_CHECKING:
    from tradelab.config.llm_schema import LLMConfig
    from tradelab.config.schema import TradelabConfig

_TIME = re.compile(r"T(\d{2}:\d{2})")
MAX_RECENT_TRADES = 3
"""Closed trades shown in the prompt (most recent last)."""


def llm_section(config: TradelabConfig | LLMConfig) -> LLMConfig:
    """The ``llm`` section of a whole config, or the section itself."""
    return config.llm if hasattr(config, "llm") else config  # type: ignore[union-attr, return-value]


def _price(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def _position_text(context: MarketContext) -> str:
    position = context["position"]
    if position["side"] == "flat":
        return "flat"
    return (f"{position['side']} entry {_price(position['entry_price'])} stop {_price(position['stop'])} "
            f"target {_price(position['target'])} trail {'on' if position['trail_on'] else 'off'} "
            f"upnl {position['unrealized_pnl']:+.0f} bars {position['bars_in_trade']}")


def _position_atr_text(context: MarketContext) -> str:
    """The open trade in ATRs from its entry: ``long +1.2atr stop -1.5atr trail off`` (``flat`` when flat)."""
    position = context["position"]
    entry = position["entry_price"]
    if position["side"] == "flat" or entry is None:
        return "flat"
    atr = context["atr"] if context["atr"] > 0 else 1.0
    sign = 1.0 if position["side"] == "long" else -1.0
    stop = "none" if position["stop"] is None else f"{sign * (position['stop'] - entry) / atr:+.1f}atr"
    return (f"{position['side']} {sign * (context['close'] - entry) / atr:+.1f}atr stop {stop} "
            f"trail {'on' if position['trail_on'] else 'off'}")


def _recent_text(trades: list[dict[str, Any]]) -> str:
    shown = trades[-MAX_RECENT_TRADES:]
    if not shown:
        return "none"
    return ", ".join(f"{t.get('side', '?')} {float(t.get('r_multiple', 0.0)):+.1f}R {t.get('exit_reason', '?')}"
                     for t in shown)


def prompt_fields(context: MarketContext) -> dict[str, str]:
    """Every template placeholder rendered from the context (see ``PROMPT_PLACEHOLDERS``)."""
    position, account = context["position"], context["account"]
    time_match = _TIME.search(context["timestamp"])
    return {
        "market": context["market"],
        "time": time_match.group(1) if time_match else context["timestamp"],
        "close": _price(context["close"]),
        "atr": f"{context['atr']:.2f}",
        "trend": context["trend"],
        "momentum": f"{context['momentum']:.0f}",
        "volatility": context["volatility"],
        "vwap_distance_atr": f"{context['vwap_distance_atr']:+.1f}",
        "return_5_bars_pct": f"{context['return_5_bars'] * 100:+.2f}",
        "return_30_bars_pct": f"{context['return_30_bars'] * 100:+.2f}",
        "return_5_bars_bp": f"{context['return_5_bars'] * 10_000:+.0f}",
        "return_30_bars_bp": f"{context['return_30_bars'] * 10_000:+.0f}",
        "minutes_to_close": str(context["minutes_to_close"]),
        "position": _position_text(context),
        "position_atr": _position_atr_text(context),
        "side": position["side"],
        "entry_price": _price(position["entry_price"]),
        "stop": _price(position["stop"]),
        "target": _price(position["target"]),
        "trail": "on" if position["trail_on"] else "off",
        "unrealized_pnl_usd": f"{position['unrealized_pnl']:+.0f}",
        "bars_in_trade": str(position["bars_in_trade"]),
        "balance_usd": f"{account['balance']:.0f}",
        "drawdown_buffer_usd": f"{account['drawdown_buffer']:.0f}",
        "consecutive_losses": str(account["consecutive_losses"]),
        "win_rate": f"{account['win_rate']:.2f}",
        "daily_pnl_usd": f"{account['daily_pnl']:+.0f}",
        "recent_trades": _recent_text(context["recent_trades"]),
        "allowed_actions": " ".join(context["allowed_actions"]),
    }


def build_messages(context: MarketContext, config: TradelabConfig | LLMConfig) -> list[dict[str, str]]:
    """The chat messages for one decision: ``[{"role": "system", ...}, {"role": "user", ...}]``.

    Args:
        context: The raw market context at the decision bar (``info["market_context"]``).
        config: The whole config or its ``llm`` section (``prompts.system`` and the user template that
            ``prompts.style`` picks for the base, :attr:`tradelab.config.llm_schema.LLMConfig.active_user_template`).
    """
    llm = llm_section(config)
    return [
        {"role": "system", "content": llm.prompts.system},
        {"role": "user", "content": llm.active_user_template.format(**prompt_fields(context))},
    ]


def template_hash(config: TradelabConfig | LLMConfig) -> str:
    """16-hex-digit hash of the system message and the user template in use, for manifests."""
    llm = llm_section(config)
    return hashlib.sha256(f"{llm.prompts.system}\0{llm.active_user_template}".encode()).hexdigest()[:16]


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text for generation: the tokenizer's chat template with the assistant turn opened.

    Templates with a thinking switch (Qwen3) render with thinking off: the answer is one line
    (:func:`tradelab.advisor.arch.chat_template_kwargs`).

    Raises:
        ConfigError: The tokenizer has no chat template (use an instruct/chat model or the tiny advisor).
    """
    if not getattr(tokenizer, "chat_template", None):
        from tradelab.errors import ConfigError

        raise ConfigError(
            f"llm.model: tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "point llm.model at a chat/instruct model (or the default models/base/tiny-advisor)"
        )
    from tradelab.advisor.arch import chat_template_kwargs

    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **chat_template_kwargs(tokenizer))


def context_key(context: MarketContext) -> str:
    """A discretised view of the context for the response cache: contexts with the same key share an answer.

    Buckets: RSI by 5, VWAP distance by 0.5 ATR, returns by 0.1 %, minutes to close by 15, the open trade's
    excursion by 0.5 ATR, the drawdown buffer by 250 USD; descriptors, side, trail, stop-at-entry and the allowed
    actions exactly. Absolute prices and the time stamp are left out on purpose.
    """
    position = context["position"]
    atr = context["atr"] if context["atr"] > 0 else 1.0
    excursion, stop_at_entry = 0.0, False
    if position["side"] != "flat" and position["entry_price"] is not None:
        sign = 1.0 if position["side"] == "long" else -1.0
        excursion = sign * (context["close"] - position["entry_price"]) / atr
        stop_at_entry = position["stop"] is not None and sign * (position["stop"] - position["entry_price"]) >= 0
    parts = (
        context["market"], context["trend"], context["volatility"], round(context["momentum"] / 5),
        round(context["vwap_distance_atr"] * 2), round(context["return_5_bars"] * 1000),
        round(context["return_30_bars"] * 1000), context["minutes_to_close"] // 15, position["side"],
        position["trail_on"], stop_at_entry, round(excursion * 2), round(context["account"]["drawdown_buffer"] / 250),
        context["account"]["consecutive_losses"], ",".join(context["allowed_actions"]),
    )
    return "|".join(str(p) for p in parts)
