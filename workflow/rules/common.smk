# Config validation (before any job), wildcard constraints and input functions. Stage files hold rules only.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from repbench.config import ConfigError, canonical, datasets_for, resolve, validate_config

try:
    validate_config(config)
    INSTANCES = {inst.name: inst for inst in resolve(config)}
except ConfigError as exc:
    raise WorkflowError(f"repbench config error: {exc}") from None

RESULTS = "results"
STAGE_SCRIPT = "../scripts/run_stage.py"
CONDA_ENV = "../../envs/repbench.yaml"  # used with --sdm conda; mirrors pyproject.toml
FIGURE_FORMATS = config["figures"]["formats"]
FAMILIES = config["metrics"]["families"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    model=r"[A-Za-z0-9][A-Za-z0-9._@-]*",
    family=r"[a-z_]+",


def model_dataset_pairs():
    """(dataset, model instance) for every extraction job, in config order."""
    return [
        (d, name)
        for name, inst in INSTANCES.items()
        for d in datasets_for(inst, config)
    ]


def activations(dataset, model):
    return f"{RESULTS}/activations/{dataset}/{model}.zarr"


def per_model_tables(family):
    return [f"{RESULTS}/metrics/{d}/{m}/{family}.csv" for d, m in model_dataset_pairs()]


def figure_paths(family):
    datasets = sorted({d for d, _ in model_dataset_pairs()})
    return [
        f"{RESULTS}/figures/{d}/{family}.{fmt}"
        for d in datasets
        for fmt in FIGURE_FORMATS
    ]


def all_outputs():
    outs = [activations(d, m) for d, m in model_dataset_pairs()]
    for family in FAMILIES:
        outs.append(f"{RESULTS}/tables/{family}.csv")
        outs += figure_paths(family)
    return outs


def instance(wildcards):
    try:
        return INSTANCES[wildcards.model]
    except KeyError:
        raise WorkflowError(f"unknown model instance {wildcards.model!r}") from None


def extract_params(wildcards):
    """The narrow config slice that determines one activation store."""
    inst = instance(wildcards)
    return canonical(
        dict(
            model_spec=inst.spec,
            revision=inst.revision,
            dataset_spec=config["datasets"][wildcards.dataset],
            options=config["extract"],
        )
    )
