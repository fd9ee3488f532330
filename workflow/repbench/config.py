"""Configuration: validation against the JSON Schema, then resolution into model instances and jobs.

``validate_config`` fills defaults and checks types with ``snakemake.utils.validate`` (the schema lives in
``workflow/schemas/config.schema.yaml``); ``resolve`` adds the checks a schema cannot express (unknown
dataset references, case-insensitive name clashes, ...) and expands ``revisions`` into one model instance
per revision, named ``MODEL@REVISION``, plus the instance ``MODEL@random`` of an entry with ``random_twin: true``
(see :func:`twin_spec`). Both raise :class:`ConfigError` naming the offending key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid configuration; the message names the key (e.g. ``models.tiny.source``)."""


@dataclass(frozen=True)
class ModelInstance:
    """One model at one revision: the unit of extraction (a slug ``name`` used in paths).

    ``spec`` is what extraction loads: the config entry without ``random_twin`` (so switching a twin on or off
    changes nothing of the model's own jobs), or for a random twin its :func:`twin_spec`. ``twin_of`` is the base
    model a random twin ``MODEL@random`` stands beside (``None`` for every other instance).
    """

    name: str
    base: str
    spec: dict = field(hash=False, compare=False)
    revision: str | None = None
    step: int | None = None
    twin_of: str | None = None


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _duplicate_key_loader():
    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"config key {key!r} appears twice (line {key_node.start_mark.line + 1}); "
                    "each model and dataset name must be unique"
                )
            seen.add(key)
        return loader.construct_mapping(node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def load_yaml(path: str | Path) -> dict:
    """Load a YAML config, refusing duplicate keys (PyYAML would silently keep the last one)."""
    with open(path) as f:
        try:
            data = yaml.load(f, Loader=_duplicate_key_loader())
        except yaml.YAMLError as exc:  # a syntax error: where, and what the parser expected
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping, got {type(data).__name__}")
    return data


# keys that moved: (old path, new path). Figure-only options live under figures.<family>, so changing one reruns
# figures only; the cosine graphs' clipping is a neighbors option (it decides the graphs, not one pair job).
MOVED_KEYS = (
    ("metrics.intrinsic_dim.figure_gride_n1", "figures.intrinsic_dim.gride_n1"),
    ("metrics.intrinsic_dim.scale_figure_layers", "figures.intrinsic_dim.scale_layers"),
    ("metrics.spectral.eigenspectrum_layers", "figures.spectral.eigenspectrum_layers"),
    ("alignment.heatmap_metric", "figures.alignment.metric"),
    ("alignment.summary", "figures.alignment.summary"),
    ("alignment.clip_quantile", "neighbors.clip_quantile"),
)


def _check_moved_keys(config: dict) -> None:
    for old, new in MOVED_KEYS:
        node = config
        for part in old.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(f"invalid config at `{old}`: this key moved to `{new}`")


def validate_config(config: dict) -> dict:
    """Validate ``config`` in place against the schema (filling defaults) and return it.

    Uses ``snakemake.utils.validate``; its error is re-raised as :class:`ConfigError` naming the key path. Metric
    names are checked against :mod:`repbench.registry` (the one list of metrics), not the schema.
    """
    import jsonschema
    from snakemake.utils import validate

    _check_moved_keys(config)
    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except Exception as exc:  # snakemake wraps the jsonschema error in a WorkflowError
        cause = exc if isinstance(exc, jsonschema.ValidationError) else _find_validation_error(exc)
        if cause is None:
            raise
        raise ConfigError(f"invalid config at `{_key_path(cause)}`: {cause.message}") from None
    config["alignment"].setdefault("null_metrics", list(config["alignment"]["metrics"]))  # default: every metric
    _check_metric_names(config)
    return config


# config key holding each family's chosen metrics (geometry has no choice: all of its metrics)
METRIC_KEYS = {
    "spectral": "metrics.spectral.metrics",
    "intrinsic_dim": "metrics.intrinsic_dim.estimators",
    "alignment": "alignment.metrics",
}


def _lookup(config: dict, path: str):
    node = config
    for part in path.split("."):
        node = node[part]
    return node


def chosen_metrics(config: dict, family: str) -> list[str]:
    """The metrics of ``family`` a (validated) config computes, in config order."""
    from .registry import names

    return list(_lookup(config, METRIC_KEYS[family])) if family in METRIC_KEYS else list(names(family))


def _check_metric_names(config: dict) -> None:
    from .registry import LAYER_FAMILIES, names

    for i, family in enumerate(config["metrics"]["families"]):
        if family not in LAYER_FAMILIES:
            raise ConfigError(
                f"invalid config at `metrics.families.{i}`: unknown family {family!r} "
                f"(known: {', '.join(LAYER_FAMILIES)})"
            )
    lists = dict(METRIC_KEYS, null_metrics="alignment.null_metrics")
    for key, path in lists.items():
        family = "alignment" if key == "null_metrics" else key
        for i, name in enumerate(_lookup(config, path)):
            if name not in names(family):
                raise ConfigError(
                    f"invalid config at `{path}.{i}`: unknown {family} metric {name!r} "
                    f"(known: {', '.join(names(family))})"
                )


def _find_validation_error(exc: BaseException):
    import jsonschema

    stack = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, jsonschema.ValidationError):
            return e
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                stack.append(nxt)
    return None


def _revision_entries(spec: dict) -> list[tuple[str | None, int | None]]:
    if spec["source"] == "trained":
        return [(f"step{step}", step) for step in sorted(spec["train"]["steps"])]
    revisions = spec.get("revisions")
    if not revisions:
        return [(None, None)]
    entries = []
    for rev in revisions:
        if isinstance(rev, str):
            entries.append((rev, None))
        else:
            entries.append((rev["name"], rev.get("step")))
    return entries


# the revision slot of a random twin's name: MODEL@random (model names cannot contain '@', so only a revision
# named like this could clash; resolve refuses one)
TWIN_REVISION = "random"
TWIN_SOURCES = ("hf", "local", "package", "trained")


def model_instances(config: dict) -> list[ModelInstance]:
    """Expand every model entry into its instances (one per revision, then ``MODEL@random`` for an entry with
    ``random_twin: true``), in config order."""
    instances = []
    for base, spec in config["models"].items():
        own = {k: v for k, v in spec.items() if k != "random_twin"}
        for rev, step in _revision_entries(spec):
            name = base if rev is None else f"{base}@{_slug(rev, f'models.{base}.revisions')}"
            instances.append(ModelInstance(name=name, base=base, spec=own, revision=rev, step=step))
        if spec.get("random_twin"):
            instances.append(ModelInstance(name=f"{base}@{TWIN_REVISION}", base=base, spec=twin_spec(base, spec),
                                           twin_of=base))
    return instances


def twin_spec(base: str, spec: dict) -> dict:
    """The spec of model ``base``'s random twin ``base@random``: same architecture and config, seeded random
    weights (the entry's ``seed``, default 0), the model's own tokenizer or image processor.

    hf / local / package: the entry itself (without ``revisions``) marked ``random_twin_of: base``;
    :func:`repbench.models.load_model` then reads the config with ``AutoConfig.from_pretrained`` and builds
    ``AutoModel.from_config`` under the seed instead of loading weights. An entry with revisions has one twin,
    built from its first listed revision (an hf entry gets ``config_revision``, a local path is filled in): the
    revisions of one model share its architecture, so one twin is the baseline of all of them.
    trained: a ``source: random`` spec of the entry's architecture, config, tokenizer and seed (the
    initialisation training starts from), marked ``random_twin_of: base``.
    """
    if spec["source"] == "trained":
        keep = ("architecture", "config", "tokenizer", "seed", "modality", "dtype", "batch_size", "max_length",
                "datasets", "tokens")
        twin = {"source": "random", **{k: spec[k] for k in keep if k in spec}}
    else:
        twin = {k: v for k, v in spec.items() if k not in ("random_twin", "revisions")}
        first, _ = _revision_entries(spec)[0]
        if first is not None and spec["source"] == "local":
            twin["path"] = spec["path"].replace("{revision}", first)
        elif first is not None:
            twin["config_revision"] = first
    return dict(twin, seed=spec.get("seed", 0), random_twin_of=base)


def _slug(text: str, key: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text) or "__" in text:
        raise ConfigError(
            f"invalid config at `{key}`: revision {text!r} is not usable in a path "
            "(letters, digits, '.', '_', '-'; no '__')"
        )
    return text


def datasets_for(instance: ModelInstance, config: dict) -> list[str]:
    """Datasets a model instance runs on: its ``datasets`` list, else every dataset serving its modality.

    A ``paired`` dataset (image + caption per sample id) serves text and vision models alike.
    """
    wanted = instance.spec.get("datasets")
    modality = instance.spec.get("modality", "text")
    names = wanted if wanted is not None else list(config["datasets"])
    return [d for d in names if config["datasets"][d].get("modality", "text") in (modality, "paired")]


#: A dataset's keys that only the label store reads (adding them never re-extracts nor retrains).
LABEL_KEYS = ("label_field", "labels_path", "labels", "label_type", "transfer_by")


def view_datasets(config: dict) -> dict[str, str]:
    """``{NAME.views: NAME}`` for every dataset with ``views`` (when the invariance family, their only reader, is on)."""
    from .data.views import derived_name

    if "invariance" not in config["metrics"]["families"]:
        return {}
    return {derived_name(d): d for d, spec in config["datasets"].items() if spec.get("views") is not None}


def view_datasets_for(instance: ModelInstance, config: dict) -> list[str]:
    """The views datasets a model instance extracts: those of the datasets it runs on."""
    bases = set(datasets_for(instance, config))
    return [v for v, base in view_datasets(config).items() if base in bases]


def extraction_spec(config: dict, dataset: str) -> dict:
    """What one dataset's activation stores (and training on it) depend on: its entry without the label keys and
    without ``views``; for a views dataset ``NAME.views``, the base entry so reduced plus ``derive_views``
    (``{"of": NAME, **views}``), which :func:`repbench.data.load_samples` reads."""
    base = view_datasets(config).get(dataset)
    spec = config["datasets"][base or dataset]
    out = {k: v for k, v in spec.items() if k not in LABEL_KEYS and k != "views"}
    if base is not None:
        out["derive_views"] = dict(spec["views"], of=base)
    return out


def extract_options(config: dict, instance: ModelInstance) -> dict:
    """The extraction options of one model instance: ``extract`` without ``threads`` (how a job runs, not what it
    writes), with ``tokens.enabled`` from the model's own ``tokens`` key when it has one, and without ``tokens``
    when the token level is off (so its options rerun nothing then)."""
    options = {k: v for k, v in config["extract"].items() if k != "threads"}
    if instance.spec.get("tokens") is not None:
        options["tokens"] = dict(options["tokens"], enabled=bool(instance.spec["tokens"]))
    if not options["tokens"]["enabled"]:  # without a token level the stores do not depend on its options
        del options["tokens"]
    return options


def _check_views(config: dict) -> None:
    from .data.views import derived_name

    for name, spec in config["datasets"].items():
        if spec.get("views") is None:
            continue
        if "invariance" not in config["metrics"]["families"]:
            raise ConfigError(f"invalid config at `datasets.{name}.views`: views are read by the invariance family "
                              "only, and metrics.families leaves it out; add invariance or remove views")
        if derived_name(name) in config["datasets"]:
            raise ConfigError(f"invalid config at `datasets.{name}.views`: its views dataset {derived_name(name)!r} "
                              "clashes with the dataset of that name; rename that dataset")


def resolve(config: dict) -> list[ModelInstance]:
    """Semantic checks beyond the schema; returns the model instances. Raises :class:`ConfigError`."""
    for kind in ("models", "datasets"):
        seen: dict[str, str] = {}
        for name in config[kind]:
            low = name.lower()
            if low in seen:
                raise ConfigError(
                    f"invalid config at `{kind}.{name}`: clashes with `{kind}.{seen[low]}` on a "
                    "case-insensitive file system; rename one of them"
                )
            seen[low] = name
    for base, spec in config["models"].items():
        for d in spec.get("datasets") or []:
            if d not in config["datasets"]:
                raise ConfigError(
                    f"invalid config at `models.{base}.datasets`: unknown dataset {d!r} "
                    f"(known: {', '.join(config['datasets'])})"
                )
        if spec.get("revisions") and spec["source"] not in ("hf", "local"):
            raise ConfigError(
                f"invalid config at `models.{base}.revisions`: revisions need source hf or local "
                f"(got {spec['source']!r})"
            )
        if spec["source"] == "local" and spec.get("revisions") and "{revision}" not in spec["path"]:
            raise ConfigError(
                f"invalid config at `models.{base}.path`: with revisions, the path must contain "
                "'{revision}' so each revision has its own directory"
            )
        if spec["source"] == "trained" and spec["train"]["dataset"] not in config["datasets"]:
            raise ConfigError(
                f"invalid config at `models.{base}.train.dataset`: unknown dataset {spec['train']['dataset']!r}"
            )
        _check_twin(base, spec)
    address = config["dask"]["scheduler_address"]
    if address is not None and not re.fullmatch(r"[a-z]+://\S+", address):
        raise ConfigError(
            f"invalid config at `dask.scheduler_address`: {address!r} is not a scheduler address "
            "(expected e.g. tcp://host:8786; null runs on the jobs' threads)"
        )
    extracted = config["extract"]["poolings"]
    for i, pooling in enumerate(config["metrics"]["poolings"]):
        if pooling not in extracted:
            raise ConfigError(
                f"invalid config at `metrics.poolings.{i}`: {pooling!r} is not among extract.poolings {extracted}"
            )
    fit = config["metrics"]["spectral"]["alpha_req"]
    if fit["rank_min"] >= fit["rank_max"]:
        raise ConfigError(
            f"invalid config at `metrics.spectral.alpha_req`: rank_min ({fit['rank_min']}) must be below "
            f"rank_max ({fit['rank_max']})"
        )
    _check_neighbor_counts(config)
    _check_views(config)
    instances = model_instances(config)
    names = [i.name for i in instances]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"invalid config at `models`: duplicate model instance(s) {dupes}")
    _check_alignment(config, instances)
    _check_label_families(config, instances)
    pooling = config["figures"]["pooling"]
    if pooling not in config["extract"]["poolings"]:
        raise ConfigError(
            f"invalid config at `figures.pooling`: {pooling!r} is not among extract.poolings "
            f"{config['extract']['poolings']}"
        )
    for inst in instances:
        if not datasets_for(inst, config):
            raise ConfigError(
                f"invalid config at `models.{inst.base}`: no dataset of modality "
                f"{inst.spec.get('modality', 'text')!r} to run on"
            )
    from .data import DatasetError, check_dataset

    for name, spec in config["datasets"].items():
        try:
            check_dataset(name, spec)
        except DatasetError as exc:
            raise ConfigError(f"invalid config at `{exc.key or f'datasets.{name}'}`: {exc}") from None
    return instances


def _check_twin(base: str, spec: dict) -> None:
    """``random_twin`` needs weights to stand beside (not ``source: random``) and a free name ``base@random``."""
    if not spec.get("random_twin"):
        return
    if spec["source"] not in TWIN_SOURCES:
        raise ConfigError(
            f"invalid config at `models.{base}.random_twin`: a random twin needs trained weights to stand beside "
            f"(source {', '.join(TWIN_SOURCES)}); source {spec['source']!r} is random-init already"
        )
    for i, rev in enumerate(spec.get("revisions") or []):
        name = rev if isinstance(rev, str) else rev["name"]
        if name.lower() == TWIN_REVISION:
            raise ConfigError(
                f"invalid config at `models.{base}.revisions.{i}`: revision {name!r} clashes with the random twin "
                f"`{base}@{TWIN_REVISION}` (random_twin: true); rename the revision or drop random_twin"
            )


def _check_neighbor_counts(config: dict) -> None:
    """Every neighbour count a metric needs must fit in the stored graphs (``neighbors.kmax``)."""
    kmax = config["neighbors"]["kmax"]
    if "intrinsic_dim" in config["metrics"]["families"]:
        idc = config["metrics"]["intrinsic_dim"]
        needs = {"mle_k": idc["mle_k"], "gride_max_scale": 2 * idc["gride_max_scale"]}
        if "local_id" in idc["estimators"]:
            needs["local_k"] = idc["local_k"]
        short = {key: need for key, need in needs.items() if need > kmax}
        if short:  # every key at once, so that one edit fixes the config
            first = next(iter(short))
            also = "".join(f"; `metrics.intrinsic_dim.{key}` needs {need}" for key, need in list(short.items())[1:])
            raise ConfigError(
                f"invalid config at `metrics.intrinsic_dim.{first}`: needs {short[first]} neighbours but "
                f"neighbors.kmax is {kmax}{also}; raise neighbors.kmax to {max(short.values())} or lower "
                f"{', '.join(short)}"
            )
        if config["figures"]["intrinsic_dim"]["gride_n1"] > idc["gride_max_scale"]:
            raise ConfigError(
                "invalid config at `figures.intrinsic_dim.gride_n1`: above metrics.intrinsic_dim.gride_max_scale "
                f"({idc['gride_max_scale']})"
            )


def _check_label_families(config: dict, instances: list[ModelInstance]) -> None:
    """Options of the label families that a schema cannot check: graph size, and the direction pairs."""
    families = config["metrics"]["families"]
    kmax = config["neighbors"]["kmax"]
    has_labels = any(labelled(spec) for spec in config["datasets"].values())
    if "clusters" in families and has_labels and config["metrics"]["clusters"]["k"] > kmax:
        raise ConfigError(
            f"invalid config at `metrics.clusters.k`: needs {config['metrics']['clusters']['k']} neighbours but "
            f"neighbors.kmax is {kmax}; raise neighbors.kmax or lower k"
        )
    known = {i.name: i for i in instances}
    for j, pair in enumerate(config["metrics"]["collapse"]["direction_pairs"]):
        for name in pair:
            if name not in known:
                raise ConfigError(
                    f"invalid config at `metrics.collapse.direction_pairs.{j}`: no model instance {name!r}"
                )
        shared = set(datasets_for(known[pair[0]], config)) & set(datasets_for(known[pair[1]], config))
        if not any(labelled(config["datasets"][d]) for d in shared):
            raise ConfigError(
                f"invalid config at `metrics.collapse.direction_pairs.{j}`: {pair[0]!r} and {pair[1]!r} share no "
                "labelled dataset (concept directions need labels on the same samples)"
            )


def labelled(dataset_spec: dict) -> bool:
    """Whether a dataset has labels (label families run on it). A label key the dataset cannot use counts as no
    labels here; the dataset check (:func:`repbench.data.check_dataset`, run by :func:`resolve`) reports it."""
    from .data import DatasetError
    from .data.labels import label_source

    try:
        return label_source(dataset_spec) is not None
    except DatasetError:
        return False


def _check_alignment(config: dict, instances: list[ModelInstance]) -> None:
    align = config["alignment"]
    if align["k"] > config["neighbors"]["kmax"] and alignment_blocks(config, instances):  # only where pairs are
        raise ConfigError(
            f"invalid config at `alignment.k`: {align['k']} exceeds neighbors.kmax ({config['neighbors']['kmax']})"
        )
    known = {i.name for i in instances} | {i.base for i in instances}
    for j, name in enumerate(align.get("models") or []):
        if name not in known:
            raise ConfigError(f"invalid config at `alignment.models.{j}`: no model or model instance {name!r}")
    for j, name in enumerate(align["null_metrics"]):
        if name not in align["metrics"]:
            raise ConfigError(f"invalid config at `alignment.null_metrics.{j}`: {name!r} is not in alignment.metrics")
    if align["preprocess"] == "prh" and config["neighbors"]["clip_quantile"] is None:
        raise ConfigError(
            "invalid config at `alignment.preprocess`: prh clips as the PRH code does, at neighbors.clip_quantile; "
            "set neighbors.clip_quantile (the PRH code used 0.95)"
        )
    shown = config["figures"]["alignment"]["metric"]
    if align["enabled"] and shown not in align["metrics"]:
        raise ConfigError(
            f"invalid config at `figures.alignment.metric`: {shown!r} is not among alignment.metrics {align['metrics']}"
        )


def alignment_pairs(config: dict, instances: list[ModelInstance]) -> list[tuple[str, str, str]]:
    """``(dataset, A, B)`` for every unordered pair of model instances sharing a dataset, A < B by name.

    Models of different modalities pair on a dataset that serves both (paired image–text data), where they saw the
    same sample ids. ``alignment.models`` (instance or base names) restricts who enters pairs.
    """
    order = {dataset: n for n, dataset in enumerate(config["datasets"])}
    pairs = [(dataset, *sorted((a, model))) for dataset, model, earlier in alignment_blocks(config, instances)
             for a in earlier]
    return sorted(pairs, key=lambda pair: (order[pair[0]], pair[1], pair[2]))


def alignment_blocks(config: dict, instances: list[ModelInstance]) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(dataset, M, earlier)``: one alignment job per model instance M of a dataset that has a model before it,
    pairing M with every instance in ``earlier`` (the members before M in config order: models in the order the
    config lists them, each followed by its checkpoints, revisions and twin).

    A model appended to the config therefore adds exactly one job per (dataset, pooling) and changes no earlier
    job's inputs; the jobs grow with the number of models, the pairs they compute with its square.
    """
    align = config["alignment"]
    if not align["enabled"]:
        return []
    chosen = align.get("models")
    members = [i for i in instances if chosen is None or i.name in chosen or i.base in chosen]
    blocks = []
    for dataset in config["datasets"]:
        here = [i.name for i in members if dataset in datasets_for(i, config)]
        blocks += [(dataset, model, tuple(here[:n])) for n, model in enumerate(here) if n]
    return blocks


MODELS_PER_MARKER = 10


def pair_input_markers(blocks, per_marker: int = MODELS_PER_MARKER):
    """How each alignment job waits for the stores of the models before it with O(M) DAG edges, not O(M²).

    ``blocks``: :func:`alignment_blocks`. The models of a dataset, in pair order, are cut into runs of ``per_marker``;
    the last model X of each run that a later model needs gets a marker file (rule ``pair_inputs``) whose inputs are
    the stores of the models of its run and the marker of the run before: the marker stands for the stores of X and
    every model before it. The job of model M lists the stores of the models before it in its own run and the
    marker of the run before.

    Returns ``(waits, markers)``: ``waits[(dataset, M)] = (direct, marker)`` (the earlier models whose stores M's
    job lists, and the model whose marker stands for the rest, or None), ``markers[(dataset, X)] = (members,
    previous)`` (the models whose stores X's marker lists, X last, and the previous marker's model, or None).
    """
    if per_marker < 1:
        raise ValueError(f"per_marker must be ≥ 1, got {per_marker}")
    order: dict[str, list[str]] = {}
    for dataset, model, earlier in blocks:
        order[dataset] = [*earlier, model]
    waits, markers = {}, {}
    for dataset, models in order.items():
        for i in range(1, len(models)):
            start = i - i % per_marker  # first model of M's run
            marker = models[start - 1] if start else None
            waits[(dataset, models[i])] = (models[start:i], marker)
            if marker is not None:
                end = start - 1
                first = end - per_marker + 1
                markers[(dataset, marker)] = (models[first:end + 1], models[first - 1] if first else None)
    return waits, markers


def direction_pairs(config: dict, instances: list[ModelInstance]) -> list[tuple[str, str, str]]:
    """``(dataset, A, B)`` whose concept directions are compared layer by layer: on every labelled dataset, every
    two instances of one model (checkpoints, revisions, its random twin: one architecture, one width), A < B by
    name, plus ``metrics.collapse.direction_pairs`` on the labelled datasets both run on. Empty without collapse.
    """
    if "collapse" not in config["metrics"]["families"]:
        return []
    pairs = set()
    for dataset, spec in config["datasets"].items():
        if not labelled(spec):
            continue
        here = [i for i in instances if dataset in datasets_for(i, config)]
        for n, a in enumerate(here):
            pairs.update((dataset, *sorted((a.name, b.name))) for b in here[n + 1:] if a.base == b.base)
        names = {i.name for i in here}
        pairs.update((dataset, *sorted(pair)) for pair in config["metrics"]["collapse"]["direction_pairs"]
                     if set(pair) <= names)
    return sorted(pairs)


def load_config(path: str | Path) -> tuple[dict, list[ModelInstance]]:
    """Load, validate and resolve a config file: ``(config with defaults, model instances)``."""
    config = validate_config(load_yaml(path))
    return config, resolve(config)


def canonical(obj: Any) -> Any:
    """``obj`` with every mapping's keys sorted, recursively.

    Snakemake decides reruns by comparing ``params`` as text, so params must not depend on the order in which
    keys were written in the YAML file; a reordered config then reruns nothing.
    """
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (config slices recorded in outputs)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def neighbor_spaces(config: dict, has_pairs: bool) -> list[str]:
    """The k-NN graph spaces the chosen metrics read (``cosine`` for alignment, ``euclidean`` for intrinsic dim)."""
    from .registry import graph_spaces

    layer_metrics = [m for family in config["metrics"]["families"] for m in chosen_metrics(config, family)]
    return graph_spaces(layer_metrics, chosen_metrics(config, "alignment") if has_pairs else [])


def schema_defaults(*path: str) -> dict:
    """The defaults the schema gives the config section at ``path``, e.g. ``schema_defaults("metrics",
    "intrinsic_dim")``: the schema is the only source of defaults, library functions called without a full config
    take theirs from here."""
    node = _schema()
    for key in path:
        node = node["properties"][key]
    return _defaults(node)


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _defaults(node: dict) -> dict:
    out = {}
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            out[key] = _defaults(sub)
        elif "default" in sub:
            out[key] = sub["default"]
    return out
