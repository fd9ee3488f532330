"""Alignment metrics between two models' representations of the same N samples (PRH family).

Pure functions on arrays; definitions: see docs/metrics.md (section "Alignment"). Notation: A ∈ ℝ^{N×Dₐ},
B ∈ ℝ^{N×D_b} one layer of each model (rows = the same samples), x̂ = x/‖x‖, Nₖᴬ(i) the k nearest neighbours
of sample i in A (cosine, self excluded, ties by lower index: the prefix k ≤ kmax of a stored graph).

kNN family (:mod:`.knn`): mutual_knn, cycle_knn, lcs_knn and their per-sample terms. Kernel family
(:mod:`.kernels`): linear_cka, unbiased_cka, cknna, svcca. Summaries, permutation null and bootstrap intervals:
:mod:`.summaries`. Preprocessing (|x|-quantile clipping) lives in :mod:`repbench.preprocess`.

More similarity measures come in *groups*, one module each: :mod:`.dense` (RSA, Procrustes, shape metric,
PWCCA, RV, RBF-CKA) and :mod:`.neighborhoods` (Jaccard, rank similarity, second-order cosine, information
imbalance). A group module has ``METRICS``, ``prepare(layers, graphs, options)`` (its per-layer state for one
model, with ``permuted``) and ``matrices(a, b, metrics, options)``; this module dispatches to it. Calibration
(null statistics, calibrated scores, the closed-form RV null): :mod:`.calibration` and :mod:`.summaries`.

This module: layer × layer. ``prepare_model`` does the per-layer work once, one layer read at a time;
``pair_matrices_prepared`` (``pair_matrices`` from raw layers) gives every metric's (Lₐ, L_b) matrix. CKA,
unbiased CKA and SVCCA of a layer pair all come from one cross product PₐᵀP_b of the centred layers, computed in
a pass that holds at most ``budget_bytes`` of layers and re-reads the rest, so memory stays bounded for large N;
when the dense group's Procrustes/shape/PWCCA pass runs in the same call, it hands its cross products over
(``on_cross``) and no second product is formed. Jaccard and rank similarity likewise come from the kNN pass's
slot look-ups when that pass runs.
Registry ``METRICS`` at the bottom.

Differences from the PRH reference code (documented, not copied): lcs_knn is divided by k; CKNNA/CKA ratios
have no "+1e-6" in the denominator (undefined ratios give NaN); SVCCA is the paper's definition (variance
fraction per side, exact CCA), not a rank-10 ``svd_lowrank`` plus noise; CKA/unbiased CKA/SVCCA use the
features as given (after optional clipping), L2 normalisation is applied only where a definition says so
(kNN graphs, CKNNA kernels); summaries report the argmax as (layer_a, layer_b).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType

import numpy as np

from ... import registry
from .kernels import (
    LayerFactors,
    _check_same_samples,
    _cka_from_prepared,
    _cknna_from_prepared,
    _CknnaLayer,
    _cross_sq_norm,
    _KernelLayer,
    _prepare_cknna_layer,
    _prepare_kernel_layer,
    _prepare_svcca_layer,
    _svcca_layer_from_basis,
    _svcca_from_cross,
    _SvccaLayer,
    _unbiased_cka_from_prepared,
    cknna,
    layer_groups,
    linear_cka,
    svcca,
    unbiased_cka,
)
from .knn import (
    DENSE_LOOKUP_MAX_BYTES,
    _EdgeKeys,
    _lcs_lengths,
    _prefix,
    _relations,
    _SlotLookup,
    cycle_knn,
    cycle_knn_per_sample,
    lcs_knn,
    lcs_knn_per_sample,
    mutual_knn,
    mutual_knn_per_sample,
)
from . import calibration
from .neighborhoods import _jaccard_terms, _rank_sim_terms
from .summaries import SUMMARIES, bootstrap_ci, matched_layers, null_calibration_prepared, summarize

CALIBRATION_KEYS = ("null_mean", "null_std", "z", "tau", "p_value", "calibrated")  # per summary, in the pair files

__all__ = [
    "CALIBRATION_KEYS", "DEFAULT_FEATURE_BUDGET_BYTES", "DENSE_LOOKUP_MAX_BYTES", "calibration", "CORE_METRICS", "KNN_METRICS", "METRICS", "PAIR_METRICS", "SUMMARIES",
    "AlignmentMetric", "LayerFactors", "PreparedLayer", "PreparedModel", "bootstrap_ci", "cknna", "cycle_knn",
    "cycle_knn_ab_per_sample", "cycle_knn_ba_per_sample", "cycle_knn_per_sample", "lcs_knn", "lcs_knn_per_sample", "linear_cka", "matched_layers", "mutual_knn",
    "cross_null_matrices", "mutual_knn_per_sample", "null_calibration_prepared", "pair_matrices", "pair_matrices_prepared",
    "prepare_model", "summarize", "svcca", "unbiased_cka",
]

# ------------------------------------------------------------------------------------------- layer × layer

# which metric reads what: repbench.registry (the one list of metrics)
PAIR_METRICS = registry.names("alignment")
_GROUPED = frozenset(m for m in PAIR_METRICS if registry.METRICS[m].group)


@functools.cache
def _groups() -> dict[str, ModuleType]:
    """metric name -> the group module that computes it (``registry.Metric.group``); imported on first use."""
    return {m: importlib.import_module(f".{registry.METRICS[m].group}", __name__) for m in sorted(_GROUPED)}
CORE_METRICS = tuple(m for m in PAIR_METRICS if m not in _GROUPED)  # the kNN + kernel pass of this module
KNN_METRICS = tuple(m for m in CORE_METRICS if registry.METRICS[m].reads == ("graphs",))
_GRAPH_METRICS = frozenset(registry.reads(CORE_METRICS, "graphs"))
_FEATURE_METRICS = frozenset(registry.reads(CORE_METRICS, "features"))


_POSITION_METRICS = ("jaccard_knn", "rank_sim")  # neighbourhood metrics computed in the core graph pass when it runs
DEFAULT_FEATURE_BUDGET_BYTES = 1024 * 2**20  # features held at once by the dense metrics (see LayerFactors)
# dense metrics that come from one cross product of the centred layers (CKNNA's kernel lives on the graph's edges)
_DENSE_PAIR_METRICS = frozenset(registry.dense(CORE_METRICS)) - _GRAPH_METRICS


@dataclass(frozen=True)
class PreparedLayer:
    """Everything one layer contributes to any pair except its N×m factor, computed once (``prepare_model``)."""

    graph: np.ndarray | None  # (N, k) int64 k-NN prefix
    kernel: _KernelLayer | None
    cknna: _CknnaLayer | None
    svcca: _SvccaLayer | None

    def permuted(self, perm: np.ndarray, inverse: np.ndarray) -> PreparedLayer:
        """The same layer with its samples reordered (new sample i = old perm[i]); graphs relabelled."""
        return PreparedLayer(
            graph=None if self.graph is None else inverse[self.graph[perm]],
            kernel=None if self.kernel is None else self.kernel.permuted(perm),
            cknna=None if self.cknna is None else self.cknna.permuted(perm, inverse),
            svcca=None if self.svcca is None else self.svcca.permuted(perm),
        )

    @functools.cached_property
    def edge_keys(self) -> _EdgeKeys:
        """The graph's edges as look-up keys, computed on first use and kept (a permuted copy has its own)."""
        return _EdgeKeys.of(self.graph)

    @property
    def n_samples(self) -> int:
        if self.graph is not None:
            return self.graph.shape[0]
        if self.kernel is not None:
            return len(self.kernel.row_sq)
        raise ValueError("empty prepared layer")


@dataclass(frozen=True)
class PreparedModel:
    """One model's prepared layers plus access to their factors (only when a dense pair metric is asked), and
    the per-layer states of the metric groups in use ({group module name: its ``Prepared``})."""

    layers: list[PreparedLayer]
    factors: LayerFactors | None
    budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES
    groups: dict = field(default_factory=dict)
    n_layers: int = 0
    n_samples: int = 0
    options: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.n_layers

    def for_metrics(self, metrics) -> PreparedModel:
        """The same model keeping only the per-layer and group states that ``pair_matrices_prepared(…, metrics)``
        reads (so a permutation null does not permute, e.g., CKNNA's kernel values or Euclidean graphs that none
        of its metrics uses)."""
        metrics = _validated_metrics(metrics)
        used = set(_group_metrics(metrics))
        kernel, cknna, svcca = bool(_DENSE_PAIR_METRICS & set(metrics)), "cknna" in metrics, "svcca" in metrics
        layers = [replace(layer, kernel=layer.kernel if kernel else None, cknna=layer.cknna if cknna else None,
                          svcca=layer.svcca if svcca else None) for layer in self.layers]
        for kept, layer in zip(layers, self.layers):  # the same graph: keep its look-up keys if already made
            if "edge_keys" in layer.__dict__:
                kept.__dict__["edge_keys"] = layer.__dict__["edge_keys"]
        groups = {name: state.for_metrics(metrics) if hasattr(state, "for_metrics") else state
                  for name, state in self.groups.items() if name in used}  # a group may trim its own state
        return replace(self, layers=layers, factors=self.factors if kernel else None, groups=groups)

    def permuted(self, perm: np.ndarray, inverse: np.ndarray) -> PreparedModel:
        """Samples reordered (new sample i = old perm[i]) without recomputing anything per layer."""
        return replace(self, layers=[layer.permuted(perm, inverse) for layer in self.layers],
                       factors=None if self.factors is None else self.factors.permuted(perm),
                       groups={name: state.permuted(perm, inverse) for name, state in self.groups.items()})


def prepare_model(layers, graphs, k: int, metrics, svcca_variance: float = 0.99,
                  svcca_components: int | None = None,
                  budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES, options: dict | None = None) -> PreparedModel:
    """Per-layer work for ``metrics``, one layer at a time: k-prefix of the graph, centred Gram factor and its
    HSIC terms, CKNNA kernel values, SVCCA projection; and each metric group's ``prepare``.

    ``graphs``: the cosine graphs (L, N, ≥k), or a mapping {space: graphs} when a group metric reads the
    ``euclidean`` ones too. ``options``: the alignment options the group metrics read (``k`` is added).

    ``layers`` (L of (N, D), e.g. a lazy sequence reading a store; None if only kNN metrics are asked) is read
    once here; when a dense pair metric (CKA, unbiased CKA, SVCCA) is asked, the factors are kept up to a quarter
    of ``budget_bytes`` and re-read from ``layers`` beyond it. ``graphs`` (L, N, ≥k), None if only CKA/unbiased
    CKA/SVCCA are asked. Cost O(L·N·D·min(N, D)); memory O(N·(k + D)) per layer in flight plus the kept factors.
    """
    metrics = _validated_metrics(metrics)
    options = {**(options or {}), "k": k}
    graphs_by_space = dict(graphs) if isinstance(graphs, dict) else {"cosine": graphs}
    graphs = graphs_by_space.get("cosine")
    group_states = _prepare_groups(layers, graphs_by_space, metrics, options)
    core = tuple(m for m in metrics if m not in _GROUPED)
    sizes = {(len(state), state.n_samples) for state in group_states.values()}
    if not core:
        if len(sizes) != 1:
            raise ValueError(f"metric groups disagree on (layers, samples): {sorted(sizes)}")
        (n_layers, n_samples), = sizes
        return PreparedModel([], None, budget_bytes, group_states, n_layers, n_samples, options)
    need_graph = bool(_GRAPH_METRICS & set(core))
    need_features = bool(_FEATURE_METRICS & set(core))
    need_kernel = bool(_DENSE_PAIR_METRICS & set(metrics))
    if need_graph and graphs is None:
        raise ValueError(f"metrics {sorted(_GRAPH_METRICS & set(metrics))} need neighbour graphs")
    if need_features and layers is None:
        raise ValueError(f"metrics {sorted(_FEATURE_METRICS & set(metrics))} need the layer activations")
    n_layers = len(graphs) if need_graph else len(layers)
    if need_graph and need_features and len(layers) != len(graphs):
        raise ValueError(f"{len(layers)} layers but {len(graphs)} graphs")
    factors = LayerFactors(layers, budget_bytes // 4) if need_features else None
    spectral = _dense_spectral(group_states.get("dense"), n_layers)
    prepared = []
    for layer in range(n_layers):
        graph = _prefix(graphs[layer], k) if need_graph else None
        features = factors.features(layer) if need_features else None
        if graph is not None and features is not None and features.shape[0] != graph.shape[0]:
            raise ValueError(f"features have {features.shape[0]} samples but the graph has {graph.shape[0]}")
        cknna_layer = _prepare_cknna_layer(features, graph) if "cknna" in metrics else None
        kernel = svcca_layer = None
        if need_kernel:
            done = spectral[layer]  # the dense group's eigendecomposition of the same PᵀP (D ≤ N), or None
            kernel, gram = _prepare_kernel_layer(factors.factor_from_features(layer, features),
                                                 None if done is None else done.gram_sq)
            if "svcca" in metrics and done is not None:
                svcca_layer = _svcca_layer_from_basis(done.eigenvalues, done.basis, svcca_variance, svcca_components)
            elif "svcca" in metrics:
                svcca_layer = _prepare_svcca_layer(gram, features.shape[0], svcca_variance, svcca_components)
        prepared.append(PreparedLayer(graph=graph, kernel=kernel, cknna=cknna_layer, svcca=svcca_layer))
        del features
    n_samples = prepared[0].n_samples if prepared else 0
    if sizes and sizes != {(n_layers, n_samples)}:
        raise ValueError(f"metric groups see (layers, samples) {sorted(sizes)}, the core metrics "
                         f"{(n_layers, n_samples)}")
    return PreparedModel(prepared, factors if need_kernel else None, budget_bytes, group_states, n_layers,
                         n_samples, options)


def _dense_spectral(state, n_layers: int) -> list:
    """Per layer, the dense group's ``_SpectralLayer`` when it holds the eigendecomposition of PᵀP (the factor
    metrics were prepared and D ≤ N), else None: the core pass takes ‖PᵀP‖²_F and SVCCA's basis from it."""
    layers = getattr(state, "spectral", None) or [None] * n_layers
    return [None if layer is None or layer.eigenvalues is None else layer for layer in layers]


def _prepare_groups(layers, graphs_by_space: dict, metrics, options: dict) -> dict:
    """Each group's per-layer state for the chosen metrics of that group: {group module name: Prepared}."""
    states = {}
    for module in dict.fromkeys(_groups()[m] for m in metrics if m in _GROUPED):
        chosen = [m for m in metrics if _groups().get(m) is module]
        spaces = {registry.METRICS[m].space for m in chosen if "graphs" in registry.METRICS[m].reads}
        missing = sorted(s for s in spaces if graphs_by_space.get(s) is None)
        if missing:
            raise ValueError(f"metrics {chosen} need the {', '.join(missing)} neighbour graphs")
        if registry.reads(chosen, "features") and layers is None:
            raise ValueError(f"metrics {list(registry.reads(chosen, 'features'))} need the layer activations")
        states[registry.METRICS[chosen[0]].group] = module.prepare(
            layers if registry.reads(chosen, "features") else None, {s: graphs_by_space[s] for s in spaces} or None,
            options, metrics=tuple(chosen))
    return states


def pair_matrices(layers_a, layers_b, graphs_a, graphs_b, k: int, metrics=CORE_METRICS,
                  svcca_variance: float = 0.99, svcca_components: int | None = None,
                  budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES, options: dict | None = None
                  ) -> dict[str, np.ndarray]:
    """Layer × layer matrices of every metric for one model pair: {name: float64 (Lₐ, L_b)}, [i, j] = (A layer i,
    B layer j).

    layers_* : sequences of (N, D) float arrays (None when only kNN metrics are asked); a lazy sequence (e.g.
               reading a Zarr store) keeps memory bounded for large N: see ``budget_bytes``;
    graphs_*  : int arrays (L, N, kmax) of cosine neighbour graphs (None when no kNN metric/CKNNA is asked);
    k ≤ kmax; metrics ⊆ {mutual_knn, cycle_knn_ab, cycle_knn_ba, lcs_knn, cka, unbiased_cka, cknna, svcca};
    budget_bytes : float64 factors (N×min(N, D) each) held at once by the dense metrics; A's layers go through
               in groups of at most half of it, B's are re-read once per group when they do not fit.
    cycle_knn_ab[i, j] = cycle_knn(Aᵢ, B_j) (via B's neighbours, back through A's); cycle_knn_ba[i, j] =
    cycle_knn(B_j, Aᵢ). Per-layer work (graph prefixes, centring, Gram factors, SVCCA bases, CKNNA kernel values)
    is done once per layer, not per pair. Per pair: O(N·k) for mutual/cycle kNN and CKNNA (O(N·k²) when
    N² exceeds ``DENSE_LOOKUP_MAX_BYTES``), O(N·k²) for LCS, O(N·rₐ·r_b) for the CKA family and SVCCA (one
    cross product PₐᵀP_b, r = min(N, D)).
    """
    metrics = _validated_metrics(metrics)
    settings = dict(svcca_variance=svcca_variance, svcca_components=svcca_components, budget_bytes=budget_bytes,
                    options=options)
    model_a = prepare_model(layers_a, graphs_a, k, metrics, **settings)
    model_b = prepare_model(layers_b, graphs_b, k, metrics, **settings)
    return pair_matrices_prepared(model_a, model_b, metrics)


def pair_matrices_prepared(model_a: PreparedModel, model_b: PreparedModel, metrics=CORE_METRICS
                           ) -> dict[str, np.ndarray]:
    """``pair_matrices`` on models already run through ``prepare_model`` (e.g. reused across permutations).

    Graph metrics loop over B's layers outside, so only one B-layer slot look-up (≤ ``DENSE_LOOKUP_MAX_BYTES``)
    is alive; dense metrics go through ``_dense_scores``.
    """
    metrics = _validated_metrics(metrics)
    _check_same_samples(model_a.n_samples, model_b.n_samples)
    out = {name: np.full((len(model_a), len(model_b)), np.nan) for name in metrics}
    dense_metrics = [m for m in metrics if m in _DENSE_PAIR_METRICS]
    shared = False  # CKA/SVCCA from the dense group's cross products (the same PₐᵀP_b) instead of their own
    graph_metrics = [m for m in metrics if m in _GRAPH_METRICS]
    on_positions = _on_positions(metrics)
    for group, chosen in _group_metrics(metrics).items():
        if group not in model_a.groups or group not in model_b.groups:
            raise ValueError(f"metrics {list(chosen)} were not prepared (prepare_model with them)")
        state_a = model_a.groups[group]
        module, extra = _groups()[chosen[0]], {}
        if group == "dense" and dense_metrics and module.uses_factors(chosen):
            def on_cross(i, j, cross):
                _cross_scores(model_a.layers[i], model_b.layers[j], cross, dense_metrics, out, i, j)
            extra, shared = {"on_cross": on_cross}, True
        out.update(module.matrices(state_a, model_b.groups[group], chosen, model_a.options, **extra))
    if graph_metrics:
        lookup_b = None
        for j, b in enumerate(model_b.layers):
            lookup_b = _SlotLookup.from_graph(b.graph, reuse=lookup_b)
            for i, a in enumerate(model_a.layers):
                for name, value in _graph_scores(a, b, lookup_b, graph_metrics + on_positions).items():
                    out[name][i, j] = value
    if dense_metrics and not shared:
        _dense_scores(model_a, model_b, dense_metrics, out)
    return out


def _on_positions(metrics) -> list[str]:
    """Jaccard and rank similarity are functions of the slots the core kNN pass finds anyway: when that pass
    runs, they are computed there instead of in the neighbourhood group."""
    return [m for m in _POSITION_METRICS if m in metrics] if _GRAPH_METRICS & set(metrics) else []


def _group_metrics(metrics) -> dict[str, tuple[str, ...]]:
    """{group: the metrics of ``metrics`` its ``matrices`` computes} for the groups a layer × layer pass calls."""
    skip = set(_on_positions(metrics))
    out = {}
    for m in metrics:
        if m in _GROUPED and m not in skip:
            group = registry.METRICS[m].group
            out[group] = out.get(group, ()) + (m,)
    return out


def _graph_scores(a: PreparedLayer, b: PreparedLayer, lookup_b: _SlotLookup, metrics) -> dict[str, float]:
    relations = _relations(a.graph, lookup_b, a.edge_keys if lookup_b.table is not None else None)
    n, k = a.graph.shape
    scores = {}
    if "mutual_knn" in metrics:
        scores["mutual_knn"] = float(np.count_nonzero(relations.found) / (n * k))
    if "lcs_knn" in metrics:
        scores["lcs_knn"] = float(relations.row_terms(_lcs_lengths).mean() / k)
    if "cycle_knn_ab" in metrics:
        scores["cycle_knn_ab"] = float(relations.cycle_ab().mean())
    if "cycle_knn_ba" in metrics:
        scores["cycle_knn_ba"] = float(relations.cycle_ba().mean())
    if "cknna" in metrics:
        scores["cknna"] = _cknna_from_prepared(a.cknna, b.cknna, relations.positions)
    if "jaccard_knn" in metrics:
        scores["jaccard_knn"] = float(relations.row_terms(_jaccard_terms).mean())
    if "rank_sim" in metrics:
        scores["rank_sim"] = float(relations.row_terms(_rank_sim_terms).mean())
    return scores


def _dense_scores(model_a: PreparedModel, model_b: PreparedModel, metrics, out: dict[str, np.ndarray]) -> None:
    """CKA, unbiased CKA and SVCCA of every layer pair from one cross product C = PₐᵀP_b each (see
    :func:`_cross_pass`)."""
    _cross_pass(model_a, model_b, metrics, [None], [out])


def _cross_pass(model_a: PreparedModel, model_b: PreparedModel, metrics, orders, outs) -> None:
    """CKA, unbiased CKA and SVCCA of every layer pair, for B's samples in each order of ``orders`` (None = as
    stored, else a permutation: new sample i = old perm[i]), into ``outs`` (one {metric: (Lₐ, L_b)} per order).

    A's layers go in groups whose factors take at most half of A's budget; for each group every B factor is
    fetched once (from the cache or re-read) and serves every order, C = Pₐᵀ(P_b[perm]): a permutation null
    reads each factor once per A group, not once per permutation (at N = 50 000 a float64 factor exceeds the
    cache, and each fetch re-reads and centres the layer). A reordered B (an order here, or a model permuted with
    ``PreparedModel.permuted``) is never copied whole: :func:`_reordered_crosses` gathers it in row blocks. Memory
    stays within the budget plus one B factor and one block. A permuted model's own pass sums the same blocks in
    the same order, so the values are equal bit for bit.
    """
    n = model_a.layers[0].n_samples
    widths = [n * layer.kernel.width * 8 for layer in model_a.layers]
    groups = layer_groups(widths, max(1, model_a.budget_bytes // 2))
    base_order = model_b.factors.perm  # B's own sample order (None: as stored)
    for rows in groups:
        factors_a = {i: model_a.factors[i] for i in rows}
        for j, layer_b in enumerate(model_b.layers):
            factor_b = model_b.factors.stored(j)
            for order, out in zip(orders, outs, strict=True):
                rows_b = base_order if order is None else order if base_order is None else base_order[order]
                if rows_b is None:
                    crosses = {i: factors_a[i].T @ factor_b for i in rows}
                else:
                    crosses = _reordered_crosses(factors_a, factor_b, rows_b)
                layer = layer_b if order is None else _reordered_terms(layer_b, order)
                for i in rows:
                    _cross_scores(model_a.layers[i], layer, crosses[i], metrics, out, i, j)
                del crosses
            del factor_b
        del factors_a


_CROSS_BLOCK_BYTES = 32 * 2**20  # rows of a reordered factor gathered at once by _reordered_crosses


def _reordered_crosses(factors_a: dict, factor_b: np.ndarray, rows_b: np.ndarray) -> dict:
    """{i: Pᵢᵀ(P_b[rows_b])} summed over blocks of rows, Σ_blocks Pᵢ[block]ᵀ P_b[rows_b[block]] (blocks of
    ``_CROSS_BLOCK_BYTES`` of P_b's rows, a function of its shape only): a reordered B is gathered one block at a
    time instead of as an N × m copy (614 MB at N = 100 000, m = 768)."""
    n, width = factor_b.shape
    step = max(1, _CROSS_BLOCK_BYTES // (8 * max(1, width)))
    crosses = {i: np.zeros((factor.shape[1], width)) for i, factor in factors_a.items()}
    for start in range(0, n, step):
        block = factor_b[rows_b[start:start + step]]
        for i, factor in factors_a.items():
            crosses[i] += factor[start:start + step].T @ block
    return crosses


def _reordered_terms(layer: PreparedLayer, order: np.ndarray) -> PreparedLayer:
    """What :func:`_cross_scores` reads of B's layer (kernel and SVCCA terms, O(N)) with its samples in ``order``:
    made when used, so a null keeps no per-permutation copies."""
    return replace(layer, graph=None, cknna=None, kernel=layer.kernel.permuted(order),
                   svcca=None if layer.svcca is None else layer.svcca.permuted(order))


def cross_null_matrices(model_a: PreparedModel, model_b: PreparedModel, metrics, permutations) -> list[dict]:
    """{metric: (Lₐ, L_b)} per permutation of B's samples, for ``metrics`` ⊆ {cka, rv, unbiased_cka, svcca}: the
    matrices ``pair_matrices_prepared(model_a, model_b.permuted(perm, ·), metrics)`` gives, from one
    :func:`_cross_pass` with the permutations innermost. The models must be unpermuted."""
    metrics = _validated_metrics(metrics)
    extra = [m for m in metrics if m not in _DENSE_PAIR_METRICS]
    if extra:
        raise ValueError(f"{extra} do not come from the cross product of the factors")
    if model_a.factors is None or model_b.factors is None or model_b.factors.perm is not None:
        raise ValueError("cross_null_matrices needs both models' factors, B unpermuted (prepare_model with them)")
    shape = (len(model_a), len(model_b))
    outs = [{name: np.full(shape, np.nan) for name in metrics} for _ in permutations]
    _cross_pass(model_a, model_b, metrics, [np.asarray(p, dtype=np.int64) for p in permutations], outs)
    return outs


def _cross_scores(a: PreparedLayer, b: PreparedLayer, cross: np.ndarray, metrics, out: dict, i: int, j: int) -> None:
    """CKA, RV, unbiased CKA and SVCCA of layer pair (i, j) from its cross product C = PₐᵀP_b."""
    cross_sq = _cross_sq_norm(cross)
    for name in {"cka", "rv"} & set(metrics):  # the RV coefficient is linear CKA
        out[name][i, j] = _cka_from_prepared(a.kernel, b.kernel, cross_sq)
    if "unbiased_cka" in metrics:
        out["unbiased_cka"][i, j] = _unbiased_cka_from_prepared(a.kernel, b.kernel, cross_sq)
    if "svcca" in metrics:
        out["svcca"][i, j] = _svcca_from_cross(a.svcca, b.svcca, cross)


def _validated_metrics(metrics) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in PAIR_METRICS]
    if unknown:
        raise ValueError(f"unknown alignment metric(s) {unknown}; known: {list(PAIR_METRICS)}")
    if not metrics:
        raise ValueError("no metric requested")
    return tuple(dict.fromkeys(metrics))


# ----------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class AlignmentMetric:
    """Registry entry: ``function`` with its own signature; ``__call__(A, B, idx_a, idx_b, k)`` uniform.

    Group metrics (``registry.Metric.group``) are called through their group's layer × layer pass on one layer
    each; graphs they need and are not given (e.g. the euclidean graphs of information imbalance) are computed
    exactly with :func:`repbench.neighbors.knn`. Keyword ``options`` reach the group (e.g. ``rsa={...}``).
    """

    name: str
    function: Callable | None = None

    @property
    def uses_features(self) -> bool:
        return "features" in registry.METRICS[self.name].reads

    @property
    def uses_graphs(self) -> bool:
        return "graphs" in registry.METRICS[self.name].reads

    def __call__(self, A=None, B=None, idx_a=None, idx_b=None, k=None, **options):
        if self.function is None:
            return _group_single_pair(self.name, A, B, idx_a, idx_b, k, options)
        if self.uses_features and self.uses_graphs:
            return self.function(A, B, idx_a, idx_b, k)
        if self.uses_graphs:
            return self.function(idx_a, idx_b, k)
        return self.function(A, B)


def _group_single_pair(name: str, A, B, idx_a, idx_b, k, options: dict) -> float:
    from ...neighbors import knn

    metric = registry.METRICS[name]
    k = 10 if k is None else k
    graphs = [None, None]
    if metric.space == "cosine" and idx_a is not None:
        graphs = [{"cosine": [np.asarray(idx_a)]}, {"cosine": [np.asarray(idx_b)]}]
    elif metric.space is not None:
        kmax = min(len(A) - 1, max(k, 32))
        graphs = [{metric.space: [knn(np.asarray(X), kmax, space=metric.space)[0]]} for X in (A, B)]
    layers = [None if A is None else [A], None if B is None else [B]]
    return float(pair_matrices(layers[0], layers[1], graphs[0], graphs[1], k, (name,), options=options)[name][0, 0])


def _cycle_knn_ba(idx_a, idx_b, k: int) -> float:
    """cycle_knn in the other direction: cycle_knn(B, A)."""
    return cycle_knn(idx_b, idx_a, k)


def cycle_knn_ab_per_sample(idx_a, idx_b, k: int) -> np.ndarray:
    """Per-sample terms of cycle_knn_ab = cycle_knn(A, B)."""
    return cycle_knn_per_sample(idx_a, idx_b, k)


def cycle_knn_ba_per_sample(idx_a, idx_b, k: int) -> np.ndarray:
    """Per-sample terms of cycle_knn_ba = cycle_knn(B, A)."""
    return cycle_knn_per_sample(idx_b, idx_a, k)


_FUNCTIONS = {"mutual_knn": mutual_knn, "cycle_knn_ab": cycle_knn, "cycle_knn_ba": _cycle_knn_ba, "lcs_knn": lcs_knn,
              "cka": linear_cka, "rv": linear_cka, "unbiased_cka": unbiased_cka, "cknna": cknna, "svcca": svcca}
METRICS: dict[str, AlignmentMetric] = {name: AlignmentMetric(name, _FUNCTIONS.get(name)) for name in PAIR_METRICS}
