"""The advisor's response contract and its tolerant parser.

The contract is one line, ``ACTION | confidence | reason``, e.g. ``BUY | 0.72 | uptrend, price above VWAP``.
:func:`parse_advice` also accepts the reasonable variants a language model produces: any case and spacing, a missing
reason or confidence, a JSON object, aliases (``MOVE_SL_TO_BE``, ``LONG``, ``TRAIL_ON``...), a leading label such as
``Decision:``, markdown decoration, and a ``<think>...</think>`` block before the answer. When several lines carry an
answer the first one counts. It never raises: anything else gives ``parse_ok=False``, no action, and an error kind.

Whether the mask allows the advised action is a separate question, answered by :func:`check_allowed`.

Pure Python (``re`` and ``json`` only): the GRPO reward imports this module under a bare interpreter with only numpy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from tradelab.core import ACTION_IDS, ACTIONS

ERROR_EMPTY = "empty"
"""The text is empty, whitespace only, nothing but a think block, or not a string."""
ERROR_NO_ACTION = "no_action"
"""No line (or JSON object) carries a recognisable answer."""
ERROR_UNKNOWN_ACTION = "unknown_action"
"""The first answer names an action that is neither an action nor a known alias."""
ERROR_BAD_CONFIDENCE = "bad_confidence"
"""The first answer's confidence field is present but not a finite number, percentage or level word."""
ERROR_DISALLOWED = "disallowed_action"
"""Set by :func:`check_allowed` only: the advice parsed, but the mask forbids its action (``parse_ok`` stays True)."""

PARSE_ERRORS: tuple[str, ...] = (ERROR_EMPTY, ERROR_NO_ACTION, ERROR_UNKNOWN_ACTION, ERROR_BAD_CONFIDENCE)
"""Every error kind :func:`parse_advice` can return."""

MAX_REASON_CHARS = 400
"""Reasons are cut to this length so experience records stay small."""

_ALIASES: dict[str, tuple[str, ...]] = {
    "HOLD": ("HOLD", "WAIT", "STAY", "NO_ACTION", "NO_TRADE", "DO_NOTHING", "NOTHING", "PASS", "KEEP", "STAND_ASIDE"),
    "BUY": ("BUY", "LONG", "GO_LONG", "ENTER_LONG", "OPEN_LONG", "BUY_LONG", "BUY_TO_OPEN"),
    "SELL": ("SELL", "SHORT", "GO_SHORT", "ENTER_SHORT", "OPEN_SHORT", "SELL_SHORT", "SELL_TO_OPEN"),
    "MOVE_TO_BE": (
        "MOVE_TO_BE", "MOVE_SL_TO_BE", "MOVE_STOP_TO_BE", "SL_TO_BE", "STOP_TO_BE", "BE", "BREAKEVEN",
        "BREAK_EVEN", "MOVE_TO_BREAKEVEN", "MOVE_STOP_TO_BREAKEVEN", "MOVE_SL_TO_BREAKEVEN", "MOVE_TO_BREAK_EVEN",
        "MOVE_STOP_TO_BREAK_EVEN", "MOVE_SL_TO_BREAK_EVEN",
    ),
    "ENABLE_TRAIL": (
        "ENABLE_TRAIL", "TRAIL_ON", "TRAIL", "TRAILING_ON", "ENABLE_TRAILING", "ENABLE_TRAILING_STOP",
        "START_TRAIL", "START_TRAILING", "TRAIL_STOP_ON", "TRAILING_STOP_ON", "TURN_ON_TRAIL",
    ),
    "DISABLE_TRAIL": (
        "DISABLE_TRAIL", "TRAIL_OFF", "TRAILING_OFF", "DISABLE_TRAILING", "DISABLE_TRAILING_STOP", "STOP_TRAIL",
        "STOP_TRAILING", "TRAIL_STOP_OFF", "TRAILING_STOP_OFF", "TURN_OFF_TRAIL", "NO_TRAIL",
    ),
}
ALIASES: dict[str, str] = {alias: action for action, names in _ALIASES.items() for alias in names}
"""Normalised alias (upper case, words joined by ``_``) -> canonical action name."""

_LEVEL_WORDS: dict[str, float] = {"VERY_HIGH": 0.9, "HIGH": 0.8, "MEDIUM": 0.5, "MODERATE": 0.5, "LOW": 0.2,
                                  "VERY_LOW": 0.1}
_MAX_ACTION_WORDS = 6
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_LABEL = re.compile(
    r"^(?:final\s+|my\s+|recommended\s+)?(?:decision|action|answer|recommendation|advice|output|response|signal)"
    r"\s*(?::|=|-|–|is\b)\s*",
    re.IGNORECASE,
)
_DECORATION = re.compile(r"^[\s>#*_`\"'\-•]*(?:\d+[.)]\s+)?[\s*_`\"']*")
_WORD_SPLIT = re.compile(r"[\s\-/]+")
_CONF_LABEL = re.compile(r"^(?:conf(?:idence)?|prob(?:ability)?)\s*(?::|=)?\s*", re.IGNORECASE)
# After a bare action word (no pipes) the answer must go on like this; "Hold on, ..." or "Long story" is prose.
_FREE_TAIL = re.compile(
    r"^(?:$|[,;:\-–—(\[.!=]|[+]?\d|conf|prob|with\b|because\b|since\b|as\b|due\b)", re.IGNORECASE
)
_NUMBER = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(%)?")
_CONF_IN_TEXT = re.compile(
    r"(?:(?:with|at)\s+)?(?:an?\s+)?conf(?:idence)?\s*(?::|=|of|is)?\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(%)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Advice:
    """One parsed advisor answer.

    Attributes:
        action: Canonical action name (one of :data:`tradelab.ACTIONS`), or None when parsing failed.
        action_id: Index of ``action`` in :data:`tradelab.ACTIONS`, or None.
        confidence: In [0, 1]; None when the answer gave none (or parsing failed).
        reason: Free-text reason, possibly empty.
        parse_ok: Whether an action was recovered.
        error: None, one of :data:`PARSE_ERRORS`, or :data:`ERROR_DISALLOWED` (set by :func:`check_allowed`).
    """

    action: str | None
    action_id: int | None
    confidence: float | None
    reason: str
    parse_ok: bool
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """The experience-record form: ``{action, action_id, confidence, reason, parse_ok, error}``."""
        return {
            "action": self.action,
            "action_id": self.action_id,
            "confidence": self.confidence,
            "reason": self.reason,
            "parse_ok": self.parse_ok,
            "error": self.error,
        }

    @property
    def allowed(self) -> bool:
        """True when parsing succeeded and :func:`check_allowed` did not flag the action."""
        return self.parse_ok and self.error is None


def failed(error: str) -> Advice:
    """An :class:`Advice` for a failed parse with the given error kind."""
    return Advice(action=None, action_id=None, confidence=None, reason="", parse_ok=False, error=error)


def format_advice(action: str, confidence: float, reason: str) -> str:
    """Write advice in the canonical contract form ``ACTION | 0.72 | reason`` (one line)."""
    clean_reason = " ".join(str(reason).replace("|", "/").split())
    return f"{action} | {min(max(float(confidence), 0.0), 1.0):.2f} | {clean_reason}"


def normalize_action(token: str) -> str | None:
    """Map an action name or alias in any case and spacing to the canonical name, or None if unknown."""
    key = _WORD_SPLIT.sub("_", token.strip().strip(".,;:!?*_`\"'()[]{}<>").strip()).upper()
    return ALIASES.get(key)


def parse_confidence(value: Any) -> tuple[float | None, bool]:
    """Read a confidence from a number or a string such as ``0.8``, ``85%``, ``85``, ``conf=0.8`` or ``high``.

    Values from 2 up to 100 are read as percentages (``85`` -> 0.85); the result is clamped to [0, 1], so an
    over-confident ``1.3`` becomes 1.0.

    Returns:
        ``(confidence, ok)``: ``(None, True)`` for an empty value, ``(None, False)`` for an unreadable one.
    """
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, (int, float)):
        return _scale(float(value), percent=False)
    if not isinstance(value, str):
        return None, False
    text = _CONF_LABEL.sub("", value.strip().strip("()[]*_`\"'").strip())
    if not text:
        return None, True
    level = _WORD_SPLIT.sub("_", text.strip(".!")).upper()
    if level in _LEVEL_WORDS:
        return _LEVEL_WORDS[level], True
    match = _NUMBER.match(text)
    if not match or text[match.end():].strip(" .").strip():
        return None, False
    return _scale(float(match.group(1)), percent=bool(match.group(2)))


def _scale(number: float, *, percent: bool) -> tuple[float | None, bool]:
    if not math.isfinite(number):
        return None, False
    if percent or 2.0 <= number <= 100.0:
        number /= 100.0
    return min(max(number, 0.0), 1.0), True


def _clean_reason(text: str) -> str:
    reason = " ".join(text.replace("|", " ").split()).strip(" -–:;,.*_`\"'")
    return reason[:MAX_REASON_CHARS]


def _advice(action: str, confidence: float | None, reason: str) -> Advice:
    return Advice(action=action, action_id=ACTION_IDS[action], confidence=confidence,
                  reason=_clean_reason(reason), parse_ok=True, error=None)


def _strip_think(text: str) -> str:
    text = _THINK_BLOCK.sub("\n", text)
    lowered = text.lower()
    close = lowered.rfind("</think>")
    if close >= 0:  # chat templates may open the think block inside the prompt, leaving only its end here
        text = text[close + len("</think>"):]
        lowered = text.lower()
    opened = lowered.find("<think>")
    if opened >= 0:  # an unterminated think block: nothing after it is an answer
        text = text[:opened]
    return text


def _from_json(obj: Any) -> Advice | None:
    """Advice from a decoded JSON object, or None when it does not look like an answer."""
    if not isinstance(obj, dict):
        return None
    fields = {str(k).strip().lower(): v for k, v in obj.items()}
    raw_action = next((fields[k] for k in ("action", "decision", "signal") if k in fields), None)
    if raw_action is None:
        return None
    action = normalize_action(raw_action) if isinstance(raw_action, str) else None
    if action is None:
        return failed(ERROR_UNKNOWN_ACTION)
    confidence, ok = parse_confidence(fields.get("confidence", fields.get("conf")))
    if not ok:
        return failed(ERROR_BAD_CONFIDENCE)
    reason = fields.get("reason", fields.get("rationale", ""))
    return _advice(action, confidence, reason if isinstance(reason, str) else json.dumps(reason))


def _split_action(text: str) -> tuple[str | None, str]:
    """Longest leading run of words that names an action, and the text after it."""
    words = list(re.finditer(r"[^\s,;:()\[\]]+", text))
    for count in range(min(len(words), _MAX_ACTION_WORDS), 0, -1):
        candidate = text[: words[count - 1].end()]
        action = normalize_action(candidate)
        if action is not None:
            return action, text[words[count - 1].end():]
    return None, text


def _from_pipes(fields: list[str]) -> Advice | None:
    """Advice from the ``|``-separated fields of one line; None for a header row or an empty row."""
    fields = [f.strip() for f in fields]
    while fields and not fields[0]:
        fields.pop(0)
    while fields and not fields[-1]:
        fields.pop()
    if not fields or fields[0].strip("*_` ").upper() in ("ACTION", "---", ""):
        return None
    action = normalize_action(fields[0])
    if action is None:
        return failed(ERROR_UNKNOWN_ACTION)
    rest = fields[1:]
    if not rest:
        return _advice(action, None, "")
    confidence, ok = parse_confidence(rest[0])
    if ok:
        return _advice(action, confidence, " | ".join(rest[1:]))
    if len(rest) == 1 and not re.search(r"\d", rest[0]):  # "BUY | strong trend": a reason without a confidence
        return _advice(action, None, rest[0])
    return failed(ERROR_BAD_CONFIDENCE)


def _from_free_line(line: str) -> Advice | None:
    """Advice from a line without pipes, such as ``BUY 0.8 uptrend`` or ``long (confidence 85%) - trend``."""
    action, rest = _split_action(line)
    if action is None or not _FREE_TAIL.match(rest.strip()):
        return None
    rest = rest.strip().lstrip(",;:-–()[] ").strip()
    confidence, ok = None, True
    head = _CONF_LABEL.sub("", rest)
    number = _NUMBER.match(head)
    if number:
        confidence, ok = parse_confidence(number.group(0))
        rest = head[number.end():]
    else:
        inner = _CONF_IN_TEXT.search(rest)
        if inner:
            confidence, ok = parse_confidence(inner.group(1) + (inner.group(2) or ""))
            rest = rest[: inner.start()] + rest[inner.end():]
    if not ok:
        return failed(ERROR_BAD_CONFIDENCE)
    return _advice(action, confidence, rest.lstrip(")]} ").strip())


def _line_advice(line: str) -> Advice | None:
    body = _DECORATION.sub("", line).strip()
    body = _LABEL.sub("", body).strip()
    body = _DECORATION.sub("", body).strip()
    if not body:
        return None
    if "|" in body:
        return _from_pipes(body.split("|"))
    return _from_free_line(body)


def parse_advice(text: Any) -> Advice:
    """Parse one advisor response into :class:`Advice`; never raises.

    Args:
        text: The raw generated text (anything that is not a string is a failed parse).

    Returns:
        The first answer found, or ``parse_ok=False`` with an error kind from :data:`PARSE_ERRORS`.
    """
    try:
        return _parse(text)
    except Exception:  # noqa: BLE001 - the contract is "never raises"; an unforeseen input is a failed parse
        return failed(ERROR_NO_ACTION)


def _parse(text: Any) -> Advice:
    if not isinstance(text, str) or not text.strip():
        return failed(ERROR_EMPTY)
    body = _strip_think(text)
    if not body.strip():
        return failed(ERROR_EMPTY)
    decoder = json.JSONDecoder()
    offset = 0
    for line in body.splitlines(keepends=True):
        brace = line.find("{")
        if brace >= 0:
            try:
                obj, _ = decoder.raw_decode(body, offset + brace)
            except ValueError:
                obj = None
            advice = _from_json(obj)
            if advice is not None:
                return advice
        offset += len(line)
        advice = _line_advice(line)
        if advice is not None:
            return advice
    return failed(ERROR_NO_ACTION)


def check_allowed(advice: Advice, allowed_actions: Iterable[str]) -> Advice:
    """Flag advice whose action the mask forbids, separately from parsing.

    Args:
        advice: A parsed advice.
        allowed_actions: Action names the mask allows at the decision bar.

    Returns:
        ``advice`` itself when parsing failed or the action is allowed; otherwise a copy with
        ``error="disallowed_action"`` and ``parse_ok`` still True (the text was well-formed).
    """
    if not advice.parse_ok or advice.action in set(allowed_actions):
        return advice
    return replace(advice, error=ERROR_DISALLOWED)


__all__ = [
    "ACTIONS", "ALIASES", "Advice", "ERROR_BAD_CONFIDENCE", "ERROR_DISALLOWED", "ERROR_EMPTY", "ERROR_NO_ACTION",
    "ERROR_UNKNOWN_ACTION", "PARSE_ERRORS", "check_allowed", "failed", "format_advice", "normalize_action",
    "parse_advice", "parse_confidence",
]
