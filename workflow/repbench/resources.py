"""Resources: what each job asks a scheduler for.

``workflow/rules/resources.smk`` calls :class:`Estimator`: memory (``mem_mb``) and wall time (``runtime``,
minutes) of one job, derived from the config: the model's size and shape (parameters, width, depth), the dataset's
sample count and token length, the metric options. The model's shape comes from the first of

1. its weights and ``config.json`` on disk (``package``, ``local``, and ``hf`` models already in the Hugging Face
   cache — fill the cache on a login node first: compute nodes rarely reach the hub anyway);
2. the ``config`` mapping of ``random`` and ``trained`` models;
3. the size in a hub id (``pythia-6.9b``, ``Llama-2-7b-hf``, ``pythia-160m``);
4. a 1B-parameter guess.

The estimates are deliberately generous (throughputs well below any current CPU or GPU, ×2 safety on times) with
a floor of :data:`MIN_RUNTIME_MIN` minutes; a job retried by the scheduler asks ``attempt`` times as much (see
``retries`` in ``profiles/slurm``). Extraction loads weights in float32 on the host before moving them to the
device, so its host memory scales with 4 bytes per parameter whatever the compute dtype.

What jobs *used* is gathered by :mod:`repbench.jobs`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import registry

MB = 1e6
TORCH_BASE_MB = 1500  # python + torch + transformers imported, a few threads
TORCH_IMPORT_MB = 600  # python + torch + numpy/zarr/xarray, no model: 270-290 MB measured (ru_maxrss), doubled
BASE_MB = 800  # python + numpy/pandas/dask/xarray/matplotlib
MIN_MEM_MB = 1000
MIN_RUNTIME_MIN = 10
SAFETY = 2.0  # on every time estimate
# sustained throughputs assumed (deliberately low: these are requests, and a short request queues faster than a
# long one only until the job is killed for running over)
CPU_FLOPS_PER_THREAD = 5e9  # numpy/torch code that is not one big matrix product
DENSE_FLOPS_PER_THREAD = 20e9  # matrix products (BLAS): Gram matrices, distances, CKA cross terms
FEATURE_BUDGET_BYTES = 1024 * 2**20  # = repbench.metrics.alignment.DEFAULT_FEATURE_BUDGET_BYTES (not imported: numpy)
DENSE_CACHE_BYTES = 512 * 2**20  # = repbench.metrics.alignment.dense.DEFAULT_FACTOR_CACHE_BYTES
RANK_BUDGET_BYTES = 256 * 2**20  # = repbench.metrics.alignment.neighborhoods.DEFAULT_RANK_BUDGET_BYTES
CROSS_BLOCK_BYTES = 32 * 2**20  # = repbench.metrics.alignment._CROSS_BLOCK_BYTES
GPU_FLOPS = 20e12
READ_BYTES_PER_S = 100e6  # a busy shared file system
DEFAULT_PARAMS = 1e9
DEFAULT_SAMPLES = 10_000  # a dataset without n_samples (files are not read to count them)
BUILTIN_SAMPLES = {"python-docs": 1600, "digits": 1797}
DENSE_ALIGNMENT = set(registry.dense(registry.names("alignment")))  # metrics on the features, O(N·r_a·r_b) per layer pair
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
    its checkpoints do not exist yet). A neighbors job builds the graphs of one space (``cosine`` or ``euclidean``).
    """

    def __init__(self, config: dict, instances: dict):
        self.config = config
        self.instances = instances
        self._blocks = None  # {(dataset, model): the models its alignment job pairs it with}, on first use
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
        """Samples of a dataset; a views dataset ``NAME.views`` has ``views.n`` per base sample with views."""
        from .config import view_datasets

        base = view_datasets(self.config).get(dataset)
        if base is None:
            return dataset_samples(self.config["datasets"][dataset])
        views = self.config["datasets"][base]["views"]
        return int(views["n"]) * (views.get("n_samples") or dataset_samples(self.config["datasets"][base]))

    def tokens_per_sample(self, dataset: str, model: str) -> int:
        shape = self.shape(model)
        if shape.tokens_per_sample is not None:
            return shape.tokens_per_sample
        spec = self.instances[model].spec
        from .config import view_datasets

        base = view_datasets(self.config).get(dataset, dataset)
        return int(spec.get("max_length") or self.config["datasets"][base]["max_length"])

    # ---- per stage
    def need(self, stage: str, wildcards: dict, threads: int = 1) -> Need:
        key = (stage, tuple(sorted(wildcards.items())), int(threads))
        if key not in self._cache:
            self._cache[key] = getattr(self, f"_{stage}")(dict(wildcards), max(1, int(threads)))
        return self._cache[key]

    def _extract(self, w, threads):
        s, n = self.shape(w["model"]), self.samples(w["dataset"])
        options = self.config["extract"]
        on_cpu = options["device"] == "cpu"
        weights = s.params * 4  # loaded in float32 on the host first
        tokens = n * self.tokens_per_sample(w["dataset"], w["model"])
        budget = options["token_budget"]
        budget = 8192 if budget == "auto" else int(budget)
        batch = budget * max(s.intermediate, s.hidden) * 4 * 4 if on_cpu else 0  # activations of a CPU batch
        units = 3 * options["unit_mb"] * MB  # prepared, computing, being written
        mem = TORCH_BASE_MB * MB + 1.25 * weights + units + batch
        store = s.layers * n * s.hidden * DTYPE_BYTES[options["store_dtype"]] * len(options["poolings"])
        flops = 2 * s.params * tokens
        seconds = weights / READ_BYTES_PER_S + flops / (CPU_FLOPS_PER_THREAD * threads if on_cpu else GPU_FLOPS) \
            + store / READ_BYTES_PER_S
        return _need(mem / MB, seconds)

    def _train(self, w, threads):
        spec = self.config["models"][w["model"]]
        s = model_shape({k: spec[k] for k in ("source", "config", "modality") if k in spec})
        train = spec["train"]
        batch, seq = train["batch_size"], train["seq_len"]
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
        # streamed: one layer in flight. Preparing it holds the float32 layer read, its float64 copy, the float64
        # search points and two float32 copies (28·N·D bytes); the search holds the layer, the exact points
        # (float64 at most), the float32 search points and the tiles in flight (16·N·D + 2·budget bytes)
        layer = max(28 * n * s.hidden, 16 * n * s.hidden + 2 * opts["budget_mb"] * MB)
        graph = 4 * n * kmax * 8  # candidates, the graph and the previous layer's graph, generously
        mem = TORCH_IMPORT_MB * MB + layer + graph
        pairs = n * n * lp
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
        """Per layer: the estimators on the stored graph, O(N·kmax); local ID also gathers each sample's
        neighbourhood (m = local_k + 1 points, float64) and multiplies its m×m Gram: O(N·m·D) + 2·N·m²·D flops."""
        s, n, lp = self._layer_facts(w)
        kmax = min(self.config["neighbors"]["kmax"], n - 1)
        opts = self.config["metrics"].get("intrinsic_dim", {})
        mem = TORCH_BASE_MB * MB + 3 * n * s.hidden * 4 + 2 * lp * n * kmax * 8
        local = 0.0
        if "local_id" in opts.get("estimators", ("local_id",)):
            m = min(int(opts.get("local_k", 128)), kmax) + 1
            local = n * m * s.hidden * (2.0 * m / DENSE_FLOPS_PER_THREAD + 40.0 / CPU_FLOPS_PER_THREAD)
        seconds = lp * (n * kmax * 200.0 / CPU_FLOPS_PER_THREAD + local + n * s.hidden * 4 / READ_BYTES_PER_S + 1.0)
        return _need(mem / MB, seconds)

    def _probes(self, w, threads):
        """Logistic probes: (folds + permutations) L-BFGS fits per layer, each ~ iterations × 2·N·D·C flops."""
        s, n, lp = self._layer_facts(w)
        opts = self.config["metrics"]["probes"]
        fits = opts["n_folds"] * (1 + opts["n_permutations"])
        mem = TORCH_BASE_MB * MB + 6 * n * s.hidden * 8
        seconds = lp * (fits * 100 * 2.0 * n * s.hidden * 16 / (DENSE_FLOPS_PER_THREAD * threads)
                        + n * s.hidden * 4 / READ_BYTES_PER_S + 0.5)
        return _need(mem / MB, seconds)

    def _clusters(self, w, threads):
        """Silhouette and Dunn: blocked exact N²·D distances per layer; the rest O(N·D)."""
        s, n, lp = self._layer_facts(w)
        opts = self.config["metrics"]["clusters"]
        mem = BASE_MB * MB + 4 * n * s.hidden * 8 + opts["budget_mb"] * MB
        seconds = lp * (2.0 * n * n * s.hidden / DENSE_FLOPS_PER_THREAD + 20.0 * n * n / CPU_FLOPS_PER_THREAD
                        + n * s.hidden * 4 / READ_BYTES_PER_S + 0.2)
        return _need(mem / MB, seconds)

    def _collapse(self, w, threads):
        """Class means, their thin SVD and the direction probes: O(N·D·C) per layer."""
        s, n, lp = self._layer_facts(w)
        mem = BASE_MB * MB + 4 * n * s.hidden * 8 + lp * 16 * s.hidden * 4
        seconds = lp * (40.0 * n * s.hidden / CPU_FLOPS_PER_THREAD + n * s.hidden * 4 / READ_BYTES_PER_S + 0.2)
        return _need(mem / MB, seconds)

    def _invariance(self, w, threads):
        """Per layer: InfoNCE's N²·D logits, LiDAR's N·K·D² scatter and two D³ eigendecompositions, DiME's
        (permutations + 1) N×N eigendecompositions (~9 N³ flops each), all float64."""
        s, rows, lp = self._layer_facts(w)
        views = self.config["datasets"][w["dataset"][: -len(".views")]]["views"]
        n, d = rows // int(views["n"]), s.hidden
        perms = self.config["metrics"]["invariance"]["dime_permutations"]
        mem = TORCH_BASE_MB * MB + 3 * rows * d * 8 + 6 * d * d * 8 + 6 * n * n * 8
        flops = 2 * n * n * d + 2 * rows * d * d + 20 * d ** 3 + (perms + 1) * 9 * n ** 3
        seconds = lp * (flops / (DENSE_FLOPS_PER_THREAD * threads) + rows * d * 4 / READ_BYTES_PER_S + 0.2)
        return _need(mem / MB, seconds)

    def _information(self, w, threads):
        """Per stored layer: every prompt's (T × T) token Gram and its eigenvalues, and the pooled samples' Gram."""
        s, n = self.shape(w["model"]), self.samples(w["dataset"])
        tokens_cfg = self.config["extract"]["tokens"]
        t = self.tokens_per_sample(w["dataset"], w["model"])
        prompts = min(n, tokens_cfg["n_samples"])
        m = min(n, s.hidden)
        mem = BASE_MB * MB + 3 * prompts * t * s.hidden * 8 + 3 * n * s.hidden * 8 + 3 * m * m * 8
        flops = prompts * (2 * t * t * s.hidden + 10 * t ** 3) + 2 * n * m * s.hidden + 10 * m ** 3
        seconds = s.layers * (flops / CPU_FLOPS_PER_THREAD + prompts * t * s.hidden * 4 / READ_BYTES_PER_S + 0.2)
        return _need(mem / MB, seconds)

    def _contextuality(self, w, threads):
        """Per stored layer: the word occurrences' pair sums and SVDs (small), the anisotropy pairs."""
        return self._information(w, threads)

    def _alignment(self, w, threads):
        """One job per model: its pairs with every model before it (``{"a", "b"}`` wildcards: one pair alone). The
        job holds its own model's prepared layers plus one other model's per thread; its time is the pairs' sum."""
        if "a" in w:
            return _need(*self._pair(w["dataset"], w["a"], w["b"], threads, null_workers=threads))
        if self._blocks is None:
            from .config import alignment_blocks

            instances = list(self.instances.values())
            self._blocks = {(d, m): before for d, m, before in alignment_blocks(self.config, instances)}
        earlier = self._blocks.get((w["dataset"], w["model"]), ())
        if not earlier:
            return _need(BASE_MB, 1.0)
        workers = max(1, min(threads, len(earlier)))
        null_workers = max(1, threads // len(earlier))  # the stage's threads per pair for the kNN null
        pairs = [self._pair(w["dataset"], w["model"], other, 1, null_workers) for other in earlier]
        peaks = sorted((mem for mem, _ in pairs), reverse=True)[:workers]
        mem = peaks[0] + sum(peak - BASE_MB for peak in peaks[1:])
        return _need(mem, sum(seconds for _, seconds in pairs) / workers)

    def _pair(self, dataset, a, b, threads, null_workers=1) -> tuple[float, float]:
        """(memory MB, seconds) of one pair's metrics; ``null_workers`` permutations of its kNN null run at once,
        each with its own slot table."""
        sa, sb, n = self.shape(a), self.shape(b), self.samples(dataset)
        options = self.config["alignment"]
        ma, mb = min(n, sa.hidden), min(n, sb.hidden)
        kmax = min(self.config["neighbors"]["kmax"], n - 1)
        k = options["k"]
        metrics = set(options["metrics"])
        # held: the graphs as stored (int32, each space the metrics read), each layer's O(N·k + D²) terms (graph
        # prefixes, CKNNA kernel values, own cosines, eigenbases) and the float64 factors (N × min(N, D)) the
        # kernel and dense groups cache (each within its own budget, whole factors only)
        factor_a, factor_b = n * ma * 8, n * mb * 8
        graphs = len(registry.spaces_read(metrics)) * (sa.layers + sb.layers) * n * kmax * 4
        per_layer = sa.layers * (2 * ma * ma * 8 + n * (40 * k + 32)) + sb.layers * (2 * mb * mb * 8 + n * (40 * k + 32))
        caches = [FEATURE_BUDGET_BYTES // 4] if metrics & {"cka", "rv", "unbiased_cka", "svcca"} else []
        caches += [DENSE_CACHE_BYTES] if metrics & {"procrustes", "shape_metric", "pwcca"} else []
        cached = sum(min(layers, cache // size) * size for cache in caches
                     for layers, size in ((sa.layers, factor_a), (sb.layers, factor_b)))
        # in flight, the larger of: the factor pass (A's group of factors, one B factor, the next one being read as
        # float32, copied to float64 with a finiteness mask, and one block of a reordered B) and a pass over one
        # layer's features (the same read, one float64 derivative: unit rows or centred points, the rank budget)
        read = n * max(sa.hidden, sb.hidden) * (4 + 8 + 1)
        factor_pass = max(min(sa.layers * factor_a, FEATURE_BUDGET_BYTES // 2), factor_a) + factor_b + read \
            + CROSS_BLOCK_BYTES
        feature_pass = read + n * max(sa.hidden, sb.hidden) * 8 + RANK_BUDGET_BYTES
        # neighbour-slot look-ups: an N×N table up to 256 MiB, else B's k slot columns; one per null worker
        lookup = (1 + null_workers) * (n * n if n * n <= 256 * 2**20 else k * n * 4)
        mem = BASE_MB * MB + graphs + per_layer + cached + max(factor_pass, feature_pass) + lookup
        nulls = set(options["null_metrics"]) & metrics
        dense_repeats = (1 if metrics & DENSE_ALIGNMENT else 0) \
            + (options["null_permutations_dense"] if nulls & DENSE_ALIGNMENT else 0)
        sparse_repeats = 1 + (options["null_permutations"] if nulls - DENSE_ALIGNMENT else 0)
        layer_pairs = sa.layers * sb.layers
        dense = layer_pairs * 2.0 * n * ma * mb * dense_repeats \
            + (sa.layers * ma + sb.layers * mb) * 2.0 * n * max(ma, mb)
        # rsa / cka_rbf: an m×m matrix per layer (m = the pairwise sample cap), an m² product per layer pair
        m = min(n, options["pairwise_max_samples"])
        quadratic = len(metrics & {"rsa", "cka_rbf"})
        mem += quadratic * (sa.layers + sb.layers) * m * m * 8
        dense += quadratic * ((sa.layers * sa.hidden + sb.layers * sb.hidden) * 2.0 * m * m
                              + layer_pairs * 2.0 * m * m * dense_repeats)
        # information imbalance: ranks beyond the stored graph by a blocked count, O(N²·D) per layer and direction
        if metrics & {"info_imbalance_ab", "info_imbalance_ba"}:
            dense += (sa.layers * sa.hidden + sb.layers * sb.hidden) * 2.0 * n * n * dense_repeats
        if "second_order_cos" in metrics:  # cosines at the other model's neighbour lists
            dense += layer_pairs * 2.0 * n * 2 * k * max(sa.hidden, sb.hidden) * sparse_repeats
        sparse = layer_pairs * 50.0 * n * kmax * sparse_repeats
        reads = (sa.layers * sa.hidden + sb.layers * sb.hidden) * n * 4 * 3  # the core pass and each group
        bootstrap = options["bootstrap"] * layer_pairs * n * kmax * 1e-8
        seconds = (dense / DENSE_FLOPS_PER_THREAD + sparse / CPU_FLOPS_PER_THREAD) / threads \
            + reads / READ_BYTES_PER_S + bootstrap
        return mem / MB, seconds

    def _aggregate(self, w, threads):
        """Tables and figures: they read small per-model or per-pair files, scaled by how many there are."""
        models = len(self.instances)
        pairs = models * (models - 1) / 2 * max(1, len(self.config["datasets"]))
        mem = BASE_MB * MB + 2 * MB * models + 0.2 * MB * pairs
        return _need(mem / MB, 0.05 * pairs + 0.5 * models)
