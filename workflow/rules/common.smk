# Config validation (before any job), wildcard constraints and input functions. Stage files hold rules only.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from repbench.config import (
    ConfigError,
    alignment_pairs,
    canonical,
    datasets_for,
    resolve,
    validate_config,
)

try:
    validate_config(config)
    INSTANCES = {inst.name: inst for inst in resolve(config)}
    PAIRS = alignment_pairs(config, list(INSTANCES.values()))
except ConfigError as exc:
    raise WorkflowError(f"repbench config error: {exc}") from None

RESULTS = "results"
STAGE_SCRIPT = "../scripts/run_stage.py"
CONDA_ENV = "../../envs/repbench.yaml"  # used with --sdm conda; mirrors pyproject.toml
FIGURE_FORMATS = config["figures"]["formats"]
FAMILIES = config["metrics"]["families"]
# euclidean graphs serve intrinsic dimension (raw vectors); cosine graphs serve alignment (L2-normalised)
ALIGNMENT = config["alignment"]
GRAPH_ALIGNMENT_METRICS = {
    "mutual_knn",
    "cycle_knn_ab",
    "cycle_knn_ba",
    "lcs_knn",
    "cknna",
}
NEIGHBOR_SPACES = (
    ["cosine"] if PAIRS and GRAPH_ALIGNMENT_METRICS & set(ALIGNMENT["metrics"]) else []
) + (["euclidean"] if "intrinsic_dim" in FAMILIES else [])
MODEL_PATTERN = r"[A-Za-z0-9](?:(?!__)[A-Za-z0-9._@-])*"


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    model=MODEL_PATTERN,
    a=MODEL_PATTERN,
    b=MODEL_PATTERN,
    pooling=r"mean|last|first",
    family=r"geometry|spectral|intrinsic_dim",


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


def has_steps():
    """Whether some model instance carries a training step (checkpoint curves and phases then apply)."""
    return any(inst.step is not None for inst in INSTANCES.values())


def all_outputs():
    outs = [activations(d, m) for d, m in model_dataset_pairs()]
    datasets = sorted({d for d, _ in model_dataset_pairs()})
    for family in FAMILIES:
        outs.append(f"{RESULTS}/tables/{family}.csv")
        outs += figure_paths(family)
    if "spectral" in FAMILIES:
        outs += expand(
            f"{RESULTS}/figures/{{d}}/spectral_eigenspectrum.{{fmt}}",
            d=datasets,
            fmt=FIGURE_FORMATS,
        )
    outs += alignment_outputs()
    if "intrinsic_dim" in FAMILIES:
        outs += expand(
            f"{RESULTS}/figures/{{d}}/intrinsic_dim_{{name}}.{{fmt}}",
            d=datasets,
            name=["scales", "local"],
            fmt=FIGURE_FORMATS,
        )
    if "spectral" in FAMILIES:
        if has_steps():
            outs.append(f"{RESULTS}/tables/spectral_phases.csv")
            outs += expand(
                f"{RESULTS}/figures/{{d}}/spectral_steps.{{fmt}}",
                d=datasets,
                fmt=FIGURE_FORMATS,
            )
    outs += [f"{RESULTS}/tables/jobs.csv"] + [
        f"{RESULTS}/figures/jobs.{fmt}" for fmt in FIGURE_FORMATS
    ]  # jobs.smk
    return outs


def alignment_outputs():
    if not PAIRS:
        return []
    datasets = sorted({d for d, _, _ in PAIRS})
    pooling = config["figures"]["pooling"]
    outs = [f"{RESULTS}/tables/alignment.csv"]
    outs += expand(
        f"{RESULTS}/figures/{{d}}/alignment_{{name}}.{{fmt}}",
        d=datasets,
        name=["models", "layers", "size"],
        fmt=FIGURE_FORMATS,
    )
    return outs


def pair_files(dataset=None, poolings=None):
    return [
        f"{RESULTS}/alignment/{d}/{p}/{a}__{b}.nc"
        for d, a, b in PAIRS
        if dataset is None or d == dataset
        for p in (poolings or config["metrics"]["poolings"])
    ]


def alignment_inputs(wildcards):
    inputs = {
        "activations_a": activations(wildcards.dataset, wildcards.a),
        "activations_b": activations(wildcards.dataset, wildcards.b),
    }
    if "cosine" in NEIGHBOR_SPACES:
        inputs["neighbors_a"] = (
            f"{RESULTS}/neighbors/{wildcards.dataset}/{wildcards.a}.zarr"
        )
        inputs["neighbors_b"] = (
            f"{RESULTS}/neighbors/{wildcards.dataset}/{wildcards.b}.zarr"
        )
    return inputs


def model_info(wildcards):
    """Identity of a model instance recorded in every per-model table."""
    inst = instance(wildcards)
    return dict(base_model=inst.base, revision=inst.revision, step=inst.step)


def checkpoints_dir(base):
    return f"{RESULTS}/checkpoints/{base}"


def extract_inputs(wildcards):
    """Trained models read the checkpoints the train rule writes; other sources need no input file."""
    inst = instance(wildcards)
    return [checkpoints_dir(inst.base)] if inst.spec["source"] == "trained" else []


def load_spec(inst):
    """The spec extraction loads: a trained model's checkpoint is a local model in results/checkpoints."""
    if inst.spec["source"] != "trained":
        return inst.spec
    keep = ("dtype", "batch_size", "max_length", "modality")
    spec = {k: inst.spec[k] for k in keep if k in inst.spec}
    return dict(spec, source="local", path=f"{checkpoints_dir(inst.base)}/{{revision}}")


def train_params(wildcards):
    spec = config["models"][wildcards.model]
    return canonical(
        dict(
            model_spec=spec,
            dataset_name=spec["train"]["dataset"],
            dataset_spec=config["datasets"][spec["train"]["dataset"]],
        )
    )


def dataset_models(dataset):
    return [m for d, m in model_dataset_pairs() if d == dataset]


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
            model_spec=load_spec(inst),
            revision=inst.revision,
            dataset_spec=config["datasets"][wildcards.dataset],
            options=config["extract"],
        )
    )
