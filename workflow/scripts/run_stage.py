"""Snakemake `script:` for every repbench rule: the rule name picks the stage in repbench.cli."""

import sys
from pathlib import Path

# Snakemake runs a copy of this file; __real_file__ (set by its preamble) is where it really lives
_here = Path(globals().get("__real_file__", __file__)).resolve()
sys.path.insert(0, str(_here.parents[1]))  # the repbench package, installed or not

from repbench.cli import run_rule  # noqa: E402

run_rule(snakemake)  # noqa: F821 (injected by Snakemake)
