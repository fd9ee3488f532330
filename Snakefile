# repbench: representation-geometry benchmarks. `snakemake --cores N` runs config/config.yaml; with
# `--configfile my.yaml` your config stands alone (the embedded default is not merged into it).
import gc

from snakemake.utils import min_version

min_version("9.0")

# Snakemake holds the whole DAG as Python objects (jobs, files, wildcards: ~1 600 jobs for 100 models on 2 datasets),
# and Python's default collection thresholds (700, 10, 10) rescan it again and again while it grows: a quarter of a
# 100-model dry run. Rarer collections build the same DAG seconds sooner (benchmarks/dag_scale.py). Job scripts run
# in their own processes and keep Python's defaults.
gc.set_threshold(50_000, 50, 100)


if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/geometry.smk"
include: "workflow/rules/spectra.smk"
include: "workflow/rules/spectral.smk"
include: "workflow/rules/neighbors.smk"
include: "workflow/rules/intrinsic_dim.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/clusters.smk"
include: "workflow/rules/collapse.smk"
include: "workflow/rules/invariance.smk"
include: "workflow/rules/information.smk"
include: "workflow/rules/contextuality.smk"
include: "workflow/rules/alignment.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/jobs.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
