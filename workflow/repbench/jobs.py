"""Jobs: what each job asks a scheduler for, and what it used.

**Asks** (``workflow/rules/resources.smk`` calls :class:`Estimator`): memory (``mem_mb``) and wall time
(``runtime``, minutes) of one job, derived from the config: the model's size and shape (parameters, width, depth),
the dataset's sample count and token length, the metric options. The model's shape comes from the first of

1. its weights and ``config.json`` on disk (``package``, ``local``, and ``hf`` models already in the Hugging Face
   cache — fill the cache on a login node first: compute nodes rarely reach the hub anyway);
2. the ``config`` mapping of ``random`` and ``trained`` models;
3. the size in a hub id (``pythia-6.9b``, ``Llama-2-7b-hf``, ``pythia-160m``);
4. a 1B-parameter guess.

The estimates are deliberately generous (throughputs well below any current CPU or GPU, ×2 safety on times) with
a floor of :data:`MIN_RUNTIME_MIN` minutes; a job retried by the scheduler asks ``attempt`` times as much (see
``retries`` in ``profiles/slurm``). Extraction loads weights in float32 on the host before moving them to the
device, so its host memory scales with 4 bytes per parameter whatever the compute dtype.

**Used** (the ``jobs`` rule): every job's ``benchmark:`` TSV (wall seconds, peak RSS, CPU time, I/O) and the
provenance header of its log (host, Slurm job id, GPU) gathered into ``results/tables/jobs.csv``, and
``results/figures/jobs.{png,pdf}``: where the time went per stage.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

MB = 1e6
TORCH_BASE_MB = 1500  # python + torch + transformers imported, a few threads
BASE_MB = 800  # python + numpy/pandas/dask/xarray/matplotlib
MIN_MEM_MB = 1000
MIN_RUNTIME_MIN = 10
SAFETY = 2.0  # on every time estimate
# sustained throughputs assumed (deliberately low: these are requests, and a short request queues faster than a
# long one only until the job is killed for running over)
CPU_FLOPS_PER_THREAD = 5e9  # numpy/torch code that is not one big matrix product
DENSE_FLOPS_PER_THREAD = 20e9  # matrix products (BLAS): Gram matrices, distances, CKA cross terms
FEATURE_BUDGET_BYTES = 1024 * 2**20  # = repbench.metrics.alignment.DEFAULT_FEATURE_BUDGET_BYTES (not imported: numpy)
GPU_FLOPS = 20e12
READ_BYTES_PER_S = 100e6  # a busy shared file system
DEFAULT_PARAMS = 1e9
DEFAULT_SAMPLES = 10_000  # a dataset without n_samples (files are not read to count them)
BUILTIN_SAMPLES = {"python-docs": 1600, "digits": 1797}
DENSE_ALIGNMENT = {"cka", "unbiased_cka", "cknna", "svcca"}  # metrics on the features, O(N·r_a·r_b) per layer pair
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


# ------------------------------------------------------------------------------------------- model shapes
@dataclass(frozen=True)
class ModelShape:
    """What the estimates need to know about a model: parameters, stored layers, features, FFN width."""

    params: float
    layers: int  # stored layers: embeddings + blocks
    hidden: int  # features per stored layer
    intermediate: int
    tokens_per_sample: int | None  # vision: patches (+ prefix); text: None (the token limit applies)
    basis: str  # where the numbers come from: weights | config.json | config | name | default


def _first(cfg: dict, keys: tuple[str, ...]):
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _dims(cfg: dict) -> tuple[int | None, int | None, int | None]:
    hidden = _first(cfg, ("hidden_size", "d_model", "n_embd", "dim", "embed_dim", "width"))
    if hidden is None and isinstance(cfg.get("hidden_sizes"), list) and cfg["hidden_sizes"]:
        hidden = cfg["hidden_sizes"][-1]  # ConvNeXt-like: the last stage's width
    layers = _first(cfg, ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "num_blocks"))
    if layers is None and isinstance(cfg.get("depths"), list):
        layers = len(cfg["depths"])  # hierarchical vision models: one hidden state per stage
    inter = _first(cfg, ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "ffn_hidden_size"))
    return (int(hidden) if hidden else None, int(layers) if layers else None, int(inter) if inter else None)


def _sub_config(cfg: dict, modality: str) -> dict:
    """The tower that runs: a vision model's ``vision_config`` (CLIP, SigLIP), a text model's ``text_config``."""
    key = "vision_config" if modality == "vision" else "text_config"
    sub = cfg.get(key)
    return sub if isinstance(sub, dict) else cfg


def _shape_from_config(cfg: dict, modality: str, basis: str, weights_params: float | None = None) -> ModelShape:
    sub = _sub_config(cfg, modality)
    hidden, layers, inter = _dims(sub)
    hidden, layers = hidden or 768, layers or 12  # transformers' BERT/GPT-2 defaults
    inter = inter or 4 * hidden
    if weights_params is not None:
        params = weights_params
    else:
        vocab = 0 if modality == "vision" else int(_first(sub, ("vocab_size",)) or 32_000)
        params = layers * (4 * hidden * hidden + 2 * hidden * inter) + vocab * hidden
    tokens = None
    if modality == "vision":
        image = _first(sub, ("image_size",)) or 224
        patch = _first(sub, ("patch_size",)) or 16
        tokens = int((image // patch) ** 2 + 1)
    return ModelShape(float(params), layers + 1, hidden, inter, tokens, basis)


def _shape_from_name(name: str, modality: str) -> ModelShape | None:
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)([mb])(?![a-z])", name.lower())
    if not m:
        return None
    params = float(m.group(1)) * (1e6 if m.group(2) == "m" else 1e9)
    layers = 32 if params > 2e9 else 24 if params > 3e8 else 12
    hidden = max(64, int(round(math.sqrt(params / (12 * layers)) / 64)) * 64)
    tokens = 257 if modality == "vision" else None
    return ModelShape(params, layers + 1, hidden, 4 * hidden, tokens, "name")


def hf_cache_dir(repo_id: str, revision: str | None) -> Path | None:
    """The snapshot folder of ``repo_id`` at ``revision`` in the local Hugging Face cache, if it is there."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub")
    repo = Path(hub) / f"models--{repo_id.replace('/', '--')}"
    if not repo.is_dir():
        return None
    ref = repo / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    snap = repo / "snapshots" / commit
    if commit and (snap / "config.json").is_file():
        return snap
    snaps = sorted(p for p in (repo / "snapshots").glob("*") if (p / "config.json").is_file()) \
        if (repo / "snapshots").is_dir() else []
    return snaps[0] if snaps else None


def _model_dir(spec: dict, revision: str | None) -> Path | None:
    source = spec["source"]
    if source == "local":
        path = Path(spec["path"].replace("{revision}", revision or ""))
        return path if (path / "config.json").is_file() else None
    if source == "package":
        try:
            found = importlib.util.find_spec(spec["package"].replace("-", "_"))
        except (ImportError, ValueError):
            return None
        if found is None or not found.submodule_search_locations:
            return None
        path = Path(list(found.submodule_search_locations)[0]) / spec.get("subdir", "model")
        return path if (path / "config.json").is_file() else None
    if source == "hf":
        return hf_cache_dir(spec["id"], revision)
    return None


def _weights_params(folder: Path, cfg: dict) -> float | None:
    files = [p for p in folder.iterdir() if p.suffix == ".safetensors" or re.match(r"pytorch_model.*\.bin$", p.name)]
    if any(p.suffix == ".safetensors" for p in files):
        files = [p for p in files if p.suffix == ".safetensors"]  # both present: from_pretrained loads these
    size = sum(p.stat().st_size for p in files)
    if not size:
        return None
    stored = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32").replace("torch.", "")
    return size / DTYPE_BYTES.get(stored, 4)


@functools.lru_cache(maxsize=None)
def _shape_cached(spec_json: str, revision: str | None) -> ModelShape:
    spec = json.loads(spec_json)
    modality = spec.get("modality", "text")
    if spec["source"] in ("random", "trained"):
        return _shape_from_config(spec.get("config") or {}, modality, "config")
    folder = _model_dir(spec, revision)
    if folder is not None:
        try:
            cfg = json.loads((folder / "config.json").read_text())
            weights = _weights_params(folder, cfg)
            return _shape_from_config(cfg, modality, "weights" if weights else "config.json", weights)
        except (OSError, ValueError):
            pass
    named = _shape_from_name(spec.get("id") or spec.get("path") or "", modality)
    if named is not None:
        return named
    hidden = 2048
    return ModelShape(DEFAULT_PARAMS, 25, hidden, 4 * hidden, 257 if modality == "vision" else None, "default")


def model_shape(spec: dict, revision: str | None = None) -> ModelShape:
    """The shape of one model instance (cached: a study with thousands of jobs asks for each model many times)."""
    return _shape_cached(json.dumps(spec, sort_keys=True, default=str), revision)


def dataset_samples(spec: dict) -> int:
    if spec.get("n_samples"):
        return int(spec["n_samples"])
    if spec.get("source") == "builtin":
        return BUILTIN_SAMPLES.get(spec.get("name", "python-docs"), DEFAULT_SAMPLES)
    return DEFAULT_SAMPLES


# -------------------------------------------------------------------------------------------- estimates
@dataclass(frozen=True)
class Need:
    mem_mb: int
    runtime: int  # minutes

    def scaled(self, attempt: int) -> Need:
        """A retried job (attempt 2, 3, …) asks for ``attempt`` times the memory and time."""
        k = max(1, int(attempt))
        return Need(self.mem_mb * k, self.runtime * k)


def _need(mem_mb: float, seconds: float) -> Need:
    mem = max(MIN_MEM_MB, int(math.ceil(mem_mb / 100.0) * 100))
    minutes = max(MIN_RUNTIME_MIN, int(math.ceil(SAFETY * seconds / 60.0)) + MIN_RUNTIME_MIN // 2)
    return Need(mem, minutes)


class Estimator:
    """Memory and wall time of each stage's job, from the config and the model instances.

    ``instances``: ``{name: object with .spec, .revision}`` (a ``trained`` model's shape comes from its config:
    its checkpoints do not exist yet); ``neighbor_spaces``: the graphs built per pooling (``cosine``, ``euclidean``).
    """

    def __init__(self, config: dict, instances: dict, neighbor_spaces=()):
        self.config = config
        self.instances = instances
        self.n_spaces = max(1, len(neighbor_spaces))
        self.poolings = len(config["metrics"]["poolings"])
        self._cache: dict = {}
        self._shapes: dict[str, ModelShape] = {}

    # ---- facts
    def shape(self, model: str) -> ModelShape:
        shape = self._shapes.get(model)
        if shape is None:
            inst = self.instances[model]
            spec = dict(inst.spec)
            if spec["source"] == "trained":  # the checkpoints do not exist yet: their architecture is in the config
                spec = {k: spec[k] for k in ("source", "config", "modality") if k in spec}
            shape = self._shapes[model] = model_shape(spec, inst.revision)
        return shape

    def samples(self, dataset: str) -> int:
        return dataset_samples(self.config["datasets"][dataset])

    def tokens_per_sample(self, dataset: str, model: str) -> int:
        shape = self.shape(model)
        if shape.tokens_per_sample is not None:
            return shape.tokens_per_sample
        spec = self.instances[model].spec
        return int(spec.get("max_length") or self.config["datasets"][dataset].get("max_length", 128))

    # ---- per stage
    def need(self, stage: str, wildcards: dict, threads: int = 1) -> Need:
        key = (stage, tuple(sorted(wildcards.items())), int(threads))
        if key not in self._cache:
            self._cache[key] = getattr(self, f"_{stage}")(dict(wildcards), max(1, int(threads)))
        return self._cache[key]

    def _extract(self, w, threads):
        s, n = self.shape(w["model"]), self.samples(w["dataset"])
        options = self.config["extract"]
        on_cpu = options.get("device", "auto") == "cpu"
        weights = s.params * 4  # loaded in float32 on the host first
        tokens = n * self.tokens_per_sample(w["dataset"], w["model"])
        budget = options.get("token_budget", "auto")
        budget = 8192 if budget == "auto" else int(budget)
        batch = budget * max(s.intermediate, s.hidden) * 4 * 4 if on_cpu else 0  # activations of a CPU batch
        units = 3 * options.get("unit_mb", 256) * MB  # prepared, computing, being written
        mem = TORCH_BASE_MB * MB + 1.25 * weights + units + batch
        store = s.layers * n * s.hidden * DTYPE_BYTES[options.get("store_dtype", "float32")] * len(options["poolings"])
        flops = 2 * s.params * tokens
        seconds = weights / READ_BYTES_PER_S + flops / (CPU_FLOPS_PER_THREAD * threads if on_cpu else GPU_FLOPS) \
            + store / READ_BYTES_PER_S
        return _need(mem / MB, seconds)

    def _train(self, w, threads):
        spec = self.config["models"][w["model"]]
        s = model_shape({k: spec[k] for k in ("source", "config", "modality") if k in spec})
        train = spec["train"]
        batch, seq = train.get("batch_size", 16), train.get("seq_len", 64)
        steps = max(train["steps"])
        acts = batch * seq * s.hidden * s.layers * 4 * 16  # saved activations for backward, generously
        mem = TORCH_BASE_MB * MB + s.params * 4 * 4 * 1.25 + acts  # weights, grads, two Adam moments
        seconds = 6 * s.params * batch * seq * steps / (CPU_FLOPS_PER_THREAD * threads) \
            + len(train["steps"]) * s.params * 4 / READ_BYTES_PER_S
        return _need(mem / MB, seconds)

    def _layer_facts(self, w):
        s, n = self.shape(w["model"]), self.samples(w["dataset"])
        return s, n, s.layers * self.poolings

    def _neighbors(self, w, threads):
        s, n, lp = self._layer_facts(w)
        opts = self.config["neighbors"]
        kmax = min(opts["kmax"], n - 1)
        graphs = 2 * lp * self.n_spaces * n * kmax * 8  # indices + distances of every layer, stacked at the end
        mem = TORCH_BASE_MB * MB + 3 * n * s.hidden * 4 + 2 * opts.get("budget_mb", 256) * MB + graphs
        pairs = n * n * lp * self.n_spaces
        seconds = (2.0 * s.hidden / DENSE_FLOPS_PER_THREAD + 10.0 / CPU_FLOPS_PER_THREAD) * pairs / threads \
            + lp * n * s.hidden * 4 / READ_BYTES_PER_S
        return _need(mem / MB, seconds)

    def _spectra(self, w, threads):
        s, n, lp = self._layer_facts(w)
        m = min(n, s.hidden)
        mem = TORCH_BASE_MB * MB + 2 * n * s.hidden * 8 + 3 * m * m * 8 + lp * m * 8 * 3
        seconds = lp * (2.0 * n * s.hidden * m + 10.0 * m**3) / (DENSE_FLOPS_PER_THREAD * threads) \
            + lp * n * s.hidden * 4 / READ_BYTES_PER_S
        return _need(mem / MB, seconds)

    def _geometry(self, w, threads):
        s, n, lp = self._layer_facts(w)
        mem = BASE_MB * MB + 3 * n * s.hidden * 4
        seconds = lp * (20.0 * n * s.hidden / (CPU_FLOPS_PER_THREAD * threads) + n * s.hidden * 4 / READ_BYTES_PER_S)
        return _need(mem / MB, seconds)

    def _spectral(self, w, threads):
        s, n, lp = self._layer_facts(w)
        mem = BASE_MB * MB + 3 * lp * min(n, s.hidden) * 8
        return _need(mem / MB, lp * 0.5)

    def _intrinsic_dim(self, w, threads):
        s, n, lp = self._layer_facts(w)
        kmax = min(self.config["neighbors"]["kmax"], n - 1)
        mem = TORCH_BASE_MB * MB + 3 * n * s.hidden * 4 + 2 * lp * n * kmax * 8
        seconds = lp * (n * kmax * 200.0 / CPU_FLOPS_PER_THREAD + n * s.hidden * 4 / READ_BYTES_PER_S + 1.0)
        return _need(mem / MB, seconds)

    def _alignment(self, w, threads):
        sa, sb, n = self.shape(w["a"]), self.shape(w["b"]), self.samples(w["dataset"])
        options = self.config.get("alignment", {})
        ma, mb = min(n, sa.hidden), min(n, sb.hidden)
        kmax = min(self.config["neighbors"]["kmax"], n - 1)
        k = options.get("k", 10)
        # float64 factors (N × min(N, D) per layer) are held up to the metrics' feature budget, the rest of a
        # layer's terms are O(N·k + D²); one layer in flight as float32 read, float64 copy and permuted copy
        factors = min(sa.layers * n * ma * 8 + sb.layers * n * mb * 8, FEATURE_BUDGET_BYTES)
        per_layer = sa.layers * (2 * ma * ma * 8 + n * (24 * k + 32)) + sb.layers * (2 * mb * mb * 8 + n * (24 * k + 32))
        lookup = 2 * min(n * n, 256 * 2**20)  # the N×N neighbour-slot table (dense up to 256 MiB)
        mem = BASE_MB * MB + factors + per_layer + 3 * n * max(sa.hidden, sb.hidden) * 8 \
            + (sa.layers + sb.layers) * n * kmax * 4 + lookup
        metrics = set(options.get("metrics", DENSE_ALIGNMENT))
        nulls = set(options.get("null_metrics", ())) & metrics if options.get("null_permutations", 0) else set()
        perms = options.get("null_permutations", 0)
        dense_repeats = (1 if metrics & DENSE_ALIGNMENT else 0) + (perms if nulls & DENSE_ALIGNMENT else 0)
        sparse_repeats = 1 + (perms if nulls - DENSE_ALIGNMENT else 0)
        dense = sa.layers * sb.layers * 2.0 * n * ma * mb * dense_repeats \
            + (sa.layers * ma + sb.layers * mb) * 2.0 * n * max(ma, mb)
        sparse = sa.layers * sb.layers * 50.0 * n * kmax * sparse_repeats
        reads = (sa.layers * sa.hidden + sb.layers * sb.hidden) * n * 4
        bootstrap = options.get("bootstrap", 0) * sa.layers * sb.layers * n * kmax * 1e-8
        seconds = (dense / DENSE_FLOPS_PER_THREAD + sparse / CPU_FLOPS_PER_THREAD) / threads \
            + reads / READ_BYTES_PER_S + bootstrap
        return _need(mem / MB, seconds)

    def _aggregate(self, w, threads):
        """Tables and figures: they read small per-model or per-pair files, scaled by how many there are."""
        models = len(self.instances)
        pairs = models * (models - 1) / 2 * max(1, len(self.config["datasets"]))
        mem = BASE_MB * MB + 2 * MB * models + 0.2 * MB * pairs
        return _need(mem / MB, 0.05 * pairs + 0.5 * models)


# ---------------------------------------------------------------------------------------------- jobs table
JOB_COLUMNS = ["stage", "wildcards", "dataset", "model", "seconds", "cpu_seconds", "mean_load", "max_rss_mb",
               "max_uss_mb", "io_in_mb", "io_out_mb", "threads", "mem_mb_requested", "runtime_min_requested",
               "host", "slurm_job_id", "gpu", "benchmark"]
_WILDCARD = re.compile(r"\{\s*(\w+)\s*(?:,((?:[^{}]|\{[^{}]*\})*))?\}")


def pattern_regex(pattern: str) -> re.Pattern:
    """A regex for a Snakemake file pattern: ``{name}`` matches within one path component, ``{name,regex}`` its
    constraint; a repeated wildcard must repeat its value."""
    out, pos, seen = [], 0, set()
    for m in _WILDCARD.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        name, constraint = m.group(1), m.group(2)
        if name in seen:
            out.append(f"(?P={name})")
        else:
            seen.add(name)
            out.append(f"(?P<{name}>{constraint or '[^/]+'})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


def _literal_length(pattern: str) -> int:
    return len(_WILDCARD.sub("", pattern))


def find_records(patterns: dict[str, str], root: str | Path = ".") -> list[tuple[str, dict, str]]:
    """``(rule, wildcards, path relative to root)`` of every file under ``root`` matching a rule's pattern.

    A file matching several patterns (``figure/{dataset}/{family}.tsv`` and ``figure/{dataset}/spectral_steps.tsv``)
    belongs to the most specific one (the most literal characters), as Snakemake's own wildcard constraints decide.
    """
    root = Path(root)
    compiled = sorted(((rule, pattern_regex(p), p) for rule, p in patterns.items() if p),
                      key=lambda item: -_literal_length(item[2]))
    tops = set()
    for _, _, pattern in compiled:
        prefix = pattern.split("{", 1)[0]
        tops.add(prefix.rsplit("/", 1)[0] if "/" in prefix else ".")
    files = set()
    for top in tops:
        if (root / top).is_dir():
            for dirpath, _, names in os.walk(root / top):
                files.update((Path(dirpath) / n).relative_to(root).as_posix() for n in names)
    found = []
    for rel in sorted(files):
        for rule, regex, _ in compiled:
            m = regex.match(rel)
            if m:
                found.append((rule, m.groupdict(), rel))
                break
    return found


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_benchmark(path: Path) -> dict:
    """The first record of a Snakemake benchmark TSV (plain or ``--benchmark-extended``)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if len(rows) < 2:
        return {}
    header, row = rows[0], rows[1]
    rec = dict(zip(header, row)) if len(row) == len(header) else dict(zip(header[:10], row[:10]))
    out = {
        "seconds": _number(rec.get("s")),
        "cpu_seconds": _number(rec.get("cpu_time")),
        "mean_load": _number(rec.get("mean_load")),
        "max_rss_mb": _number(rec.get("max_rss")),
        "max_uss_mb": _number(rec.get("max_uss")),
        "io_in_mb": _number(rec.get("io_in")),
        "io_out_mb": _number(rec.get("io_out")),
        "threads": _number(rec.get("threads")),
    }
    resources = rec.get("resources")
    if resources and resources.startswith("{"):
        import ast

        try:
            res = ast.literal_eval(resources)
        except (ValueError, SyntaxError):
            res = {}
        out["mem_mb_requested"] = _number(res.get("mem_mb"))
        out["runtime_min_requested"] = _number(res.get("runtime"))
        if math.isnan(out["threads"]):
            out["threads"] = _number(res.get("_cores"))
    return out


_HEADER_KEYS = {"host": "host", "slurm_job_id": "slurm_job_id", "gpu": "gpu"}


def read_log_header(path: Path) -> dict:
    """Host, Slurm job id and GPU from the provenance header of a job's log (the last run's, logs append)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    start = text.rfind("== repbench rule")
    if start < 0:
        return {}
    out = {}
    for line in text[start:].splitlines()[1:8]:
        key, _, value = line.partition(":")
        if key in _HEADER_KEYS and key not in out:
            value = value.strip()
            out[_HEADER_KEYS[key]] = value.split("  ")[0] if key == "gpu" else value
    return out


def jobs_table(records: dict[str, list[str]], scope: dict[str, list[str]], root: str | Path = ".") -> "pd.DataFrame":
    """One row per job of the current config that left a benchmark record.

    ``records``: ``{rule: [benchmark pattern, log pattern]}`` in pipeline order; ``scope``: ``{wildcard: values}``
    of the current config, so records of models or datasets since removed from it are left out.
    """
    import pandas as pd

    order = {rule: i for i, rule in enumerate(records)}
    allowed = {k: set(v) for k, v in scope.items()}
    rows = []
    root = Path(root)
    for rule, wildcards, rel in find_records({r: p[0] for r, p in records.items()}, root):
        if any(k in allowed and v not in allowed[k] for k, v in wildcards.items()):
            continue
        row = {"stage": rule, "wildcards": ",".join(f"{k}={v}" for k, v in sorted(wildcards.items())),
               "dataset": wildcards.get("dataset", ""),
               "model": wildcards.get("model") or ("__".join((wildcards["a"], wildcards["b"]))
                                                   if "a" in wildcards and "b" in wildcards else ""),
               "benchmark": rel}
        row.update(read_benchmark(root / rel))
        log_pattern = records[rule][1] if len(records[rule]) > 1 else ""
        if log_pattern:
            try:
                row.update(read_log_header(root / _WILDCARD.sub(lambda m: wildcards[m.group(1)], log_pattern)))
            except KeyError:  # the log names a wildcard its benchmark does not
                pass
        rows.append(row)
    frame = pd.DataFrame(rows, columns=JOB_COLUMNS)
    frame["_order"] = frame["stage"].map(order)
    frame = frame.sort_values(["_order", "wildcards"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return frame


def stage_summary(frame) -> "pd.DataFrame":
    """Per stage: jobs, total/median/max seconds, peak RSS, in pipeline (table) order."""
    if frame.empty:
        import pandas as pd

        return pd.DataFrame(columns=["stage", "jobs", "total_s", "median_s", "max_s", "max_rss_mb"])
    g = frame.groupby("stage", sort=False)
    return g.agg(jobs=("seconds", "size"), total_s=("seconds", "sum"), median_s=("seconds", "median"),
                 max_s=("seconds", "max"), max_rss_mb=("max_rss_mb", "max")).reset_index()


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def jobs_figure(frame, title: str = "where the time went"):
    """Left: total wall time per stage (bars, with job count and median); right: peak memory of each job."""
    import numpy as np

    from .figures import STYLE, plt

    summary = stage_summary(frame)
    with plt.rc_context(STYLE):
        height = 1.2 + 0.32 * max(3, len(summary))
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9.5, height), layout="constrained", sharey=True)
        if summary.empty:
            ax_t.text(0.5, 0.5, "no benchmark records", ha="center", va="center", transform=ax_t.transAxes)
        y = np.arange(len(summary))
        total = float(summary["total_s"].sum()) if len(summary) else 0.0
        ax_t.barh(y, summary["total_s"], color="#4477aa")
        for yi, (_, row) in zip(y, summary.iterrows()):
            ax_t.text(row["total_s"], yi, f"  {int(row['jobs'])} × median {_duration(row['median_s'])}",
                      va="center", fontsize=7)
        ax_t.set_yticks(y, summary["stage"])
        ax_t.invert_yaxis()
        ax_t.set_xlabel("total wall time (s, summed over jobs)")
        ax_t.set_xlim(0, max(1.0, float(summary["total_s"].max()) * 1.6) if len(summary) else 1.0)
        ax_t.set_title(f"{len(frame)} jobs, {_duration(total)} of job time")
        index = {stage: i for i, stage in enumerate(summary["stage"])}
        rss = frame.dropna(subset=["max_rss_mb"])
        if len(rss):
            jitter = (np.arange(len(rss)) % 7 - 3) * 0.05  # deterministic spread
            ax_m.scatter(rss["max_rss_mb"], rss["stage"].map(index) + jitter, s=10, alpha=0.7, color="#ee6677",
                         label="peak RSS")
            req = frame.dropna(subset=["mem_mb_requested"]).drop_duplicates("stage")
            if len(req):
                ax_m.scatter(req["mem_mb_requested"], req["stage"].map(index), marker="|", s=120, color="black",
                             label="requested (first job)")
            ax_m.set_xscale("log")
            ax_m.legend(fontsize=7, loc="lower right")
        ax_m.set_xlabel("memory per job (MB)")
        fig.suptitle(title)
    return fig


def stage_jobs(smk) -> None:
    """The ``jobs`` rule: ``results/tables/jobs.csv`` and the time figure (every format configured)."""
    from . import figures, store

    frame = jobs_table(smk.params.records, smk.params.scope)
    store.write_csv_atomic(frame, smk.output.table)
    print(stage_summary(frame).to_string(index=False), flush=True)
    figures.save(jobs_figure(frame), list(smk.output.figures), dpi=smk.params.dpi)
