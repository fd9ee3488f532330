# Config validation (before any job), wildcard constraints and input functions. Stage files hold rules only;
# every rule of workflow/rules/X.smk runs workflow/repbench/stages/X.py (the function named like the rule).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from repbench import registry
from repbench.config import (
    ConfigError,
    alignment_blocks,
    alignment_pairs,
    canonical,
    datasets_for,
    direction_pairs,
    extract_options,
    extraction_spec,
    labelled,
    neighbor_spaces,
    pair_input_markers,
    resolve,
    validate_config,
    view_datasets,
    view_datasets_for,
)

try:
    validate_config(config)
    INSTANCES = {inst.name: inst for inst in resolve(config)}
    PAIRS = alignment_pairs(config, list(INSTANCES.values()))
    BLOCKS = alignment_blocks(config, list(INSTANCES.values()))
    DIRECTION_PAIRS = direction_pairs(config, list(INSTANCES.values()))
except ConfigError as exc:
    raise WorkflowError(f"repbench config error: {exc}") from None

RESULTS = "results"
CONDA_ENV = "../../envs/repbench.yaml"  # used with --sdm conda; mirrors pyproject.toml
FIGURE_FORMATS = config["figures"]["formats"]
LABELLED = sorted(d for d, spec in config["datasets"].items() if labelled(spec))
# {NAME.views: NAME}: the derived datasets of augmented views
VIEWS = view_datasets(config)
# label families run on labelled datasets only, view families on views datasets: without one they have nothing to do
# instances whose stores have a token level (extract.tokens, or the model's own `tokens`)
TOKEN_MODELS = sorted(
    name
    for name, inst in INSTANCES.items()
    if "tokens" in extract_options(config, inst)
)
FAMILIES = [
    f
    for f in config["metrics"]["families"]
    if (f not in registry.LABEL_FAMILIES or LABELLED)
    and (f not in registry.VIEW_FAMILIES or VIEWS)
    and (f not in registry.TOKEN_FAMILIES or TOKEN_MODELS)
]
ALIGNMENT = config["alignment"]
# {(dataset, model): the models before it}: one alignment job per entry pairs the model with each of them
EARLIER = {(d, m): list(earlier) for d, m, earlier in BLOCKS}
# how each alignment job waits for the earlier models' stores (the earlier ones of its run directly, the runs
# before through one `pair_inputs` marker) and what each marker lists: O(M) DAG edges, not O(M²)
PAIR_WAITS, PAIR_MARKERS = pair_input_markers(BLOCKS)
ALIGNMENT_SPACES = registry.spaces_read(ALIGNMENT["metrics"])
# cosine graphs serve alignment (L2-normalised rows), euclidean graphs intrinsic dimension (raw rows)
NEIGHBOR_SPACES = neighbor_spaces(config, bool(PAIRS))
MODEL_PATTERN = r"[A-Za-z0-9](?:(?!__)[A-Za-z0-9._@-])*"


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    model=MODEL_PATTERN,
    a=MODEL_PATTERN,
    b=MODEL_PATTERN,
    pooling=r"mean|last|first",
    space="|".join(registry.SPACES),
    family="|".join(registry.LAYER_FAMILIES),


# (dataset, model instance) for every extraction job, in config order (views datasets after the others)
MODEL_DATASETS = [
    (d, name)
    for name, inst in INSTANCES.items()
    for d in datasets_for(inst, config) + view_datasets_for(inst, config)
]


def datasets():
    """The datasets some model runs on (not the views datasets: only the view families read those)."""
    return sorted({d for d, _ in MODEL_DATASETS if d not in VIEWS})


def activations(dataset, model):
    return f"{RESULTS}/activations/{dataset}/{model}.zarr"


def graphs(dataset, space, model):
    return f"{RESULTS}/neighbors/{dataset}/{space}/{model}.zarr"


def family_datasets(family):
    """The datasets a per-layer family runs on (label families: the labelled ones)."""
    if family in registry.LABEL_FAMILIES:
        return [d for d in datasets() if d in LABELLED]
    if family in registry.VIEW_FAMILIES:
        return sorted({d for d, _ in MODEL_DATASETS if d in VIEWS})
    if family in registry.TOKEN_FAMILIES:
        return sorted(
            {d for d, m in MODEL_DATASETS if m in TOKEN_MODELS and d not in VIEWS}
        )
    return datasets()


def per_model_tables(family):
    datasets_ = set(family_datasets(family))
    return [
        f"{RESULTS}/metrics/{d}/{m}/{family}.csv"
        for d, m in MODEL_DATASETS
        if d in datasets_
        and (family not in registry.TOKEN_FAMILIES or m in TOKEN_MODELS)
    ]


def figures(name, datasets_=None):
    """Paths of figure ``name`` (every format) for each dataset."""
    return [
        f"{RESULTS}/figures/{d}/{name}.{fmt}"
        for d in (datasets() if datasets_ is None else datasets_)
        for fmt in FIGURE_FORMATS
    ]


def has_steps():
    """Whether some model instance carries a training step (checkpoint curves and phases then apply)."""
    return any(inst.step is not None for inst in INSTANCES.values())


def stepped(datasets_):
    """Those of ``datasets_`` that a model instance with a training step runs on (the over-training figures)."""
    return [
        d
        for d in datasets_
        if any(INSTANCES[m].step is not None for dd, m in MODEL_DATASETS if dd == d)
    ]


def all_outputs():
    outs = [activations(d, m) for d, m in MODEL_DATASETS]
    for family in FAMILIES:
        outs.append(f"{RESULTS}/tables/{family}.csv")
        outs += figures(family, family_datasets(family))
    if "probes" in FAMILIES:
        outs.append(f"{RESULTS}/tables/concept_depth.csv")
    if "clusters" in FAMILIES:
        outs.append(f"{RESULTS}/tables/aqi.csv")
    if "probes" in FAMILIES and "collapse" in FAMILIES and has_steps():
        outs += figures("label_steps", stepped(family_datasets("probes")))
    if "collapse" in FAMILIES and DIRECTION_PAIRS:
        outs.append(f"{RESULTS}/tables/directions.csv")
        outs += figures("directions", sorted({d for d, _, _ in DIRECTION_PAIRS}))
    if "spectral" in FAMILIES:
        outs.append(f"{RESULTS}/tables/spectra.csv")
        outs += figures("spectral_eigenspectrum")
        if has_steps():
            outs.append(f"{RESULTS}/tables/spectral_phases.csv")
            outs += figures("spectral_steps", stepped(datasets()))
    if "intrinsic_dim" in FAMILIES:
        outs += figures("intrinsic_dim_scales") + figures("intrinsic_dim_local")
    if PAIRS:
        outs += [
            f"{RESULTS}/tables/alignment.csv",
            f"{RESULTS}/tables/alignment_layers.csv",
        ]
        for name in ("models", "layers", "size"):
            outs += figures(f"alignment_{name}", sorted({d for d, _, _ in PAIRS}))
    outs += [f"{RESULTS}/tables/jobs.csv"] + [
        f"{RESULTS}/figures/jobs.{fmt}" for fmt in FIGURE_FORMATS
    ]  # jobs.smk
    return outs


def pair_files(dataset=None, poolings=None):
    """The alignment jobs' pair lists (one per model with earlier models, dataset and pooling)."""
    return [
        f"{RESULTS}/alignment/{d}/{p}/{m}.pairs.json"
        for d, m, _ in BLOCKS
        if dataset is None or d == dataset
        for p in (poolings or config["metrics"]["poolings"])
    ]


def block_earlier(wildcards):
    """The models an alignment job pairs its model with (those before it in config order): where their stores and
    graphs are. Params: the job's inputs list only those of its own run, a `pair_inputs` marker stands for the rest.
    """
    d = wildcards.dataset
    return [
        dict(
            model=m,
            activations=activations(d, m),
            graphs={s: graphs(d, s, m) for s in ALIGNMENT_SPACES},
        )
        for m in EARLIER[(d, wildcards.model)]
    ]


def pair_inputs_marker(dataset, model):
    return f"{RESULTS}/alignment/{dataset}/inputs/{model}.ready"


def pair_stores(dataset, models):
    """The activation stores and the graphs (of the spaces the alignment metrics read) of these models."""
    return [
        path
        for m in models
        for path in [activations(dataset, m)]
        + [graphs(dataset, s, m) for s in ALIGNMENT_SPACES]
    ]


def with_marker(inputs, dataset, model):
    if model is not None:
        inputs["marker"] = pair_inputs_marker(dataset, model)
    return inputs


def pair_inputs_inputs(wildcards):
    """The stores of the models of the marker's run and the previous run's marker (see `pair_input_markers`)."""
    d = wildcards.dataset
    members, previous = PAIR_MARKERS[(d, wildcards.model)]
    return with_marker({"stores": pair_stores(d, members)}, d, previous)


def alignment_inputs(wildcards):
    """The model's own stores, those of the earlier models of its run and the marker standing for the rest."""
    d, m = wildcards.dataset, wildcards.model
    direct, marker = PAIR_WAITS[(d, m)]
    inputs = dict(
        activations=activations(d, m),
        **{s: graphs(d, s, m) for s in ALIGNMENT_SPACES},
        earlier=pair_stores(d, direct),
    )
    return with_marker(inputs, d, marker)


def alignment_params():
    """What decides a pair file: the alignment options (not which models pair: that decides which files exist)
    and the clipping the layers get before the metrics (shared with the cosine graphs).
    """
    options = {
        k: v for k, v in ALIGNMENT.items() if k not in ("models", "enabled", "threads")
    }
    return canonical(dict(options, clip_quantile=config["neighbors"]["clip_quantile"]))


def neighbor_params(wildcards):
    """What decides one graph store: kmax and the search settings; clipping for cosine graphs only (per layer, or
    with one threshold per model as the PRH code when ``alignment.preprocess`` is ``prh``).
    """
    # threads decide how the job runs, not the graphs
    options = {k: v for k, v in config["neighbors"].items() if k != "threads"}
    if wildcards.space != "cosine":
        del options["clip_quantile"]
    elif ALIGNMENT["preprocess"] == "prh":
        options["clip_mode"] = "prh"
    return canonical(options)


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
        return {
            k: v for k, v in inst.spec.items() if k != "tokens"
        }  # tokens: an extract option
    keep = ("dtype", "batch_size", "max_length", "modality")
    spec = {k: inst.spec[k] for k in keep if k in inst.spec}
    return dict(spec, source="local", path=f"{checkpoints_dir(inst.base)}/{{revision}}")


def train_params(wildcards):
    # random_twin adds the instance MODEL@random and does not change the training
    spec = {
        k: v
        for k, v in config["models"][wildcards.model].items()
        if k not in ("random_twin", "tokens")
    }
    return canonical(
        dict(
            model_spec=spec,
            dataset_name=spec["train"]["dataset"],
            dataset_spec=extraction_spec(config, spec["train"]["dataset"]),
        )
    )


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
            dataset_spec=extraction_spec(config, wildcards.dataset),
            # views stores get no token level: no token family reads them
            options={
                k: v
                for k, v in extract_options(config, inst).items()
                if k != "tokens" or wildcards.dataset not in VIEWS
            },
        )
    )


# the figures.<family> keys each figure job draws with (a figure option reruns only the figures that use it)
FIGURE_KEYS = {
    "figure": {"intrinsic_dim": ["gride_n1"]},  # depth curves, per family
    "figure_eigenspectrum": {"spectral": ["eigenspectrum_layers"]},
    "figure_id_scales": {"intrinsic_dim": ["scale_layers"]},
    "figure_alignment": {"alignment": ["metric", "summary"]},
}


def figure_options(rule, family):
    """The figure-only options (``figures.<family>``) that figure rule ``rule`` draws ``family`` with."""
    keys = FIGURE_KEYS[rule].get(family, [])
    return canonical({k: config["figures"][family][k] for k in keys})
