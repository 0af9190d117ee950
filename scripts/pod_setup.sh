#!/usr/bin/env bash
# A GPU pod from nothing to a SofT-GRPO launch: clone the fork, build its environment beside tradelab's, point
# runner.python at it, run preflight and print the launch command. Idempotent: a second run reuses the clone, skips an
# environment already built with the same steps, and leaves a config already pointing at it as it is.
#
# Usage: scripts/pod_setup.sh [--root DIR] [--market NQ] [--plan]      (or: make pod ROOT=DIR MARKET=NQ)
#   --root    the tradelab workspace (default: the project folder); its config/ gets runner.python
#   --market  the market preflight checks (default NQ)
#   --plan    print the pip steps and the preflight call instead of running them; does not need CUDA (the clone, the
#             repository check and the config change are done for real)
# Environment:
#   SOFT_GRPO_REPO_ROOT  an existing clone to use instead of cloning into <root>/SofT-GRPO-master-main
#   SOFT_GRPO_REPO_URL   where to clone from (default https://github.com/zz1358m/SofT-GRPO-master)
#   FORK_ENV             the fork's environment (default <root>/.venv-fork)
#   FORK_PYTHON_BIN      the Python 3.11 that creates it (default python3.11, else python3)
#   TRADELAB_PYTHON      tradelab's interpreter (default <project>/.venv/bin/python, else python3)
set -euo pipefail

PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$PROJECT"
MARKET="NQ"
PLAN=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --market) MARKET="$2"; shift 2 ;;
    --plan) PLAN=1; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "pod_setup: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"
REPO_URL="${SOFT_GRPO_REPO_URL:-https://github.com/zz1358m/SofT-GRPO-master}"
FORK_ENV="${FORK_ENV:-$ROOT/.venv-fork}"
if [[ -n "${TRADELAB_PYTHON:-}" ]]; then TL_PY="$TRADELAB_PYTHON"
elif [[ -x "$PROJECT/.venv/bin/python" ]]; then TL_PY="$PROJECT/.venv/bin/python"
else TL_PY="python3"; fi
FORK_PY_BIN="${FORK_PYTHON_BIN:-$(command -v python3.11 || command -v python3)}"

say() { echo "pod_setup: $*"; }

# 1. CUDA: the fork's environment (torch 2.6 CUDA wheels, flash-attn, the sglang fork) only builds and runs on a GPU.
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"; fi
if [[ "$gpus" -lt 1 ]]; then
  if [[ "$PLAN" -eq 0 ]]; then
    echo "pod_setup: refusing: no CUDA GPU is visible (nvidia-smi is missing or lists no GPU). This builds the" \
         "SofT-GRPO fork's CUDA environment (torch 2.6, flash-attn 2.7.3, its sglang fork) for a GPU pod; run it" \
         "there, or add --plan to see every step without CUDA." >&2
    exit 3
  fi
  say "no CUDA GPU visible; --plan continues without one"
else
  say "$gpus CUDA GPU(s) visible"
fi

# 2. The repository: $SOFT_GRPO_REPO_ROOT, else a clone in <root>/SofT-GRPO-master-main (reused when present).
if [[ -n "${SOFT_GRPO_REPO_ROOT:-}" ]]; then
  REPO="$(cd "$SOFT_GRPO_REPO_ROOT" && pwd)"
  say "repository: $REPO (from \$SOFT_GRPO_REPO_ROOT)"
else
  REPO="$ROOT/SofT-GRPO-master-main"
  if [[ -d "$REPO/.git" ]]; then
    say "repository: $REPO already cloned (commit $(git -C "$REPO" rev-parse --short HEAD))"
  elif [[ -e "$REPO" && -n "$(ls -A "$REPO" 2>/dev/null)" ]]; then
    echo "pod_setup: $REPO exists but is not a git clone; move it away, or export SOFT_GRPO_REPO_ROOT=$REPO" >&2
    exit 2
  else
    say "cloning $REPO_URL into $REPO"
    git clone --quiet "$REPO_URL" "$REPO"
  fi
fi
PYTHONPATH="$PROJECT/src${PYTHONPATH:+:$PYTHONPATH}" "$TL_PY" - "$REPO" <<'EOF'
import sys
from pathlib import Path

from tradelab.grpo.engines.soft_grpo import missing_repo_files

missing = missing_repo_files(Path(sys.argv[1]))
if missing:
    sys.exit(f"pod_setup: {sys.argv[1]} is not a complete SofT-GRPO repository; missing: {', '.join(missing)}")
print(f"pod_setup: {sys.argv[1]} has every file the soft-grpo engine needs")
EOF

# 3. The fork's environment, with the pins of its README (Python 3.11, torch 2.6, transformers 4.51.1, flash-attn
#    2.7.3, its sglang and verl 0.4.x forks as editable installs), beside tradelab's own.
STEPS=(
  "$FORK_ENV/bin/python -m pip install pip==25.2"
  "$FORK_ENV/bin/python -m pip install torch==2.6.0 transformers==4.51.1 tensorboard==2.20.0 sgl_kernel==0.1.1 accelerate==1.10.1 torch_memory_saver==0.0.8 uvloop==0.21.0 jsonlines math_verify openai"
  "$FORK_ENV/bin/python -m pip install flash_attn==2.7.3 --no-build-isolation"
  "$FORK_ENV/bin/python -m pip install -e $REPO/Soft-Thinking+noise+loss-main/sglang_soft_thinking_pkg/python[all]"
  "$FORK_ENV/bin/python -m pip install -e $REPO/verl-0.4.x"
  "$FORK_ENV/bin/python -m pip install torch==2.6.0 transformers==4.51.1"
)
STAMP="$FORK_ENV/.tradelab-pod-steps"
wanted="$(printf '%s\n' "${STEPS[@]}")"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" ]]; then
  say "fork environment $FORK_ENV already built with these steps"
elif [[ "$PLAN" -eq 1 ]]; then
  say "plan: $FORK_PY_BIN -m venv $FORK_ENV"
  for step in "${STEPS[@]}"; do say "plan: $step"; done
else
  [[ -x "$FORK_ENV/bin/python" ]] || "$FORK_PY_BIN" -m venv "$FORK_ENV"
  for step in "${STEPS[@]}"; do say "$step"; eval "$step"; done
  "$FORK_ENV/bin/python" -c "import torch, transformers; assert torch.__version__.startswith('2.6.'), torch.__version__; assert transformers.__version__ == '4.51.1', transformers.__version__"
  printf '%s\n' "${STEPS[@]}" > "$STAMP"
  say "fork environment built: $FORK_ENV"
fi

# 4. runner.python -> the fork's interpreter, in the workspace's own config (copied from the shipped one if absent).
PYTHONPATH="$PROJECT/src${PYTHONPATH:+:$PYTHONPATH}" "$TL_PY" - "$ROOT" "$FORK_ENV/bin/python" <<'EOF'
import re
import shutil
import sys
from pathlib import Path

from tradelab.config import DEFAULT_CONFIG_DIR

root, python = Path(sys.argv[1]), sys.argv[2]
config_dir = root / "config"
if not (config_dir / "app.yaml").is_file():
    shutil.copytree(DEFAULT_CONFIG_DIR, config_dir, dirs_exist_ok=True)
    print(f"pod_setup: copied the shipped config to {config_dir}")
path = config_dir / "phase3_soft_grpo.yaml"
text = path.read_text(encoding="utf-8")
block = re.search(r"^runner:\n(?:(?:  .*|\s*)\n)*", text, flags=re.MULTILINE)
line = re.compile(r"^  python: .*$", flags=re.MULTILINE)
if block is None or not line.search(block.group(0)):
    sys.exit(f"pod_setup: {path} has no runner.python line to set; set runner.python: {python} by hand")
updated = text[:block.start()] + line.sub(f"  python: {python}", block.group(0), count=1) + text[block.end():]
if updated == text:
    print(f"pod_setup: runner.python already {python} in {path}")
else:
    path.write_text(updated, encoding="utf-8")
    print(f"pod_setup: runner.python = {python} in {path}")
EOF

# 5. Preflight under that interpreter, then the command that launches the run.
PREFLIGHT=("$TL_PY" "$PROJECT/main.py" --root "$ROOT" preflight --market "$MARKET" --engine soft-grpo)
LAUNCH="$TL_PY $PROJECT/main.py --root $ROOT stage2 --market $MARKET --engine soft-grpo"
if [[ "$PLAN" -eq 1 ]]; then
  say "plan: ${PREFLIGHT[*]}"
else
  export SOFT_GRPO_REPO_ROOT="$REPO"
  if "${PREFLIGHT[@]}"; then say "preflight passed"
  else say "preflight reported failures (above); fix them, then launch"; fi
fi
say "launch with:"
echo "SOFT_GRPO_REPO_ROOT=$REPO $LAUNCH"
