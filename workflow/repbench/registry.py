"""Every metric repbench computes, in one table.

This module imports nothing heavy (no numpy): the Snakefile, the resource estimates, config validation, the stages
and the tables all read it. Adding a metric means adding its function to its family module
(``repbench.metrics.<family>``) and one :class:`Metric` line here; definitions live in ``docs/metrics.md``.

Families:

``layer`` families (``metrics.families`` in the config) give one row per (model, pooling, layer, metric) in
``results/metrics/{dataset}/{model}/{family}.csv``; the ``pair`` family (``alignment``) gives one
layer × layer matrix per (model pair, pooling, metric) in ``results/alignment/{dataset}/{pooling}/{A}__{B}.nc``.

What a metric reads decides which stores its job needs:

* ``features`` — the pooled activations ``results/activations/{dataset}/{model}.zarr``;
* ``graphs`` — the exact k-NN graphs ``results/neighbors/{dataset}/{space}/{model}.zarr`` of ``space``
  (``cosine``: L2-normalised rows, for alignment; ``euclidean``: raw rows, for intrinsic dimension);
* ``spectra`` — the per-layer eigenvalues ``results/spectra/{dataset}/{model}.zarr``;
* ``labels`` — the per-sample labels of the label store ``results/labels/{dataset}.zarr`` (label families run on
  labelled datasets only);
* ``views`` — the ``view_of``/``view`` columns of a views dataset's store ``results/activations/{NAME}.views/…``
  (view families run on views datasets only);
* ``tokens`` — the token level of an activation store (``extract.tokens``; token families run on such stores only).

``dense`` marks metrics whose layer × layer pass works on the features (O(N·D²) products, or O(N·k·D) feature
gathers) rather than on the graphs alone (O(N·k)): each permutation of their null is a full pass over both
models' features, so the null gives them the smaller permutation count.
``per_sample`` names the function of the family module that gives the metric's per-sample terms (bootstrap
intervals use them). ``lower_is_more_similar`` marks distances and imbalances (0 = identical): their best layer
pair is the minimum and their calibration looks at the lower tail. ``group`` names the module of
``repbench.metrics.alignment`` that computes a pair metric outside the core kNN/kernel pass.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = {  # family -> scope
    "geometry": "layer",
    "spectral": "layer",
    "intrinsic_dim": "layer",
    "probes": "layer",
    "clusters": "layer",
    "collapse": "layer",
    "invariance": "layer",
    "information": "layer",
    "contextuality": "layer",
    "alignment": "pair",
}
LAYER_FAMILIES = tuple(f for f, scope in FAMILIES.items() if scope == "layer")
LABEL_FAMILIES = ("probes", "clusters", "collapse")  # run only on datasets with labels (they read ``labels``)
VIEW_FAMILIES = ("invariance",)  # run only on the views datasets NAME.views (they read ``views``)
TOKEN_FAMILIES = ("information", "contextuality")  # run only on stores with a token level (extract.tokens; they read ``tokens``)
SPACES = ("cosine", "euclidean")


@dataclass(frozen=True)
class Metric:
    name: str
    family: str
    reads: tuple[str, ...]
    space: str | None = None  # the graph space read, when ``graphs`` is among ``reads``
    dense: bool = False
    per_sample: str | None = None
    lower_is_more_similar: bool = False
    group: str | None = None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        # geometry: the raw geometry of a layer's point cloud
        Metric("mean_norm", "geometry", ("features",)),
        Metric("anisotropy", "geometry", ("features",)),
        # spectral: functions of the layer's eigenvalues
        Metric("rankme_sigma", "spectral", ("spectra",)),
        Metric("rankme_lambda", "spectral", ("spectra",)),
        Metric("alpha_req", "spectral", ("spectra",)),
        Metric("participation_ratio", "spectral", ("spectra",)),
        Metric("von_neumann_entropy", "spectral", ("spectra",)),
        # intrinsic dimension: on the euclidean graph; the features resolve exact duplicates (and local ID's clouds)
        Metric("twonn", "intrinsic_dim", ("graphs", "features"), space="euclidean"),
        Metric("twonn_mle", "intrinsic_dim", ("graphs", "features"), space="euclidean"),
        Metric("gride", "intrinsic_dim", ("graphs", "features"), space="euclidean"),
        Metric("mle_levina_bickel", "intrinsic_dim", ("graphs", "features"), space="euclidean"),
        Metric("local_id", "intrinsic_dim", ("graphs", "features"), space="euclidean"),
        # probes: cross-validated linear probes of the labels (classes or a numeric target)
        Metric("probe_accuracy", "probes", ("features", "labels")),
        Metric("probe_balanced_accuracy", "probes", ("features", "labels")),
        Metric("probe_macro_f1", "probes", ("features", "labels")),
        Metric("probe_chance_accuracy", "probes", ("features", "labels")),
        Metric("probe_r2", "probes", ("features", "labels")),
        Metric("probe_chance_r2", "probes", ("features", "labels")),
        # transfer (dataset key transfer_by): leave one value of a sample column out, train on the rest
        Metric("probe_transfer_accuracy", "probes", ("features", "labels")),
        Metric("probe_transfer_balanced_accuracy", "probes", ("features", "labels")),
        Metric("probe_transfer_macro_f1", "probes", ("features", "labels")),
        Metric("probe_transfer_r2", "probes", ("features", "labels")),
        # clusters: how the classes sit in the layer (label overlap on the euclidean graph)
        Metric("label_overlap", "clusters", ("graphs", "labels"), space="euclidean"),
        Metric("silhouette", "clusters", ("features", "labels")),
        Metric("calinski_harabasz", "clusters", ("features", "labels")),
        Metric("davies_bouldin", "clusters", ("features", "labels"), lower_is_more_similar=True),
        Metric("dunn", "clusters", ("features", "labels")),
        Metric("xie_beni", "clusters", ("features", "labels"), lower_is_more_similar=True),
        # collapse: neural collapse of the class means, and the classes' mass-mean directions
        Metric("nc1", "collapse", ("features", "labels"), lower_is_more_similar=True),
        Metric("nc2_equinorm", "collapse", ("features", "labels"), lower_is_more_similar=True),
        Metric("nc2_equiangularity", "collapse", ("features", "labels"), lower_is_more_similar=True),
        Metric("nc2_max_angle", "collapse", ("features", "labels"), lower_is_more_similar=True),
        Metric("cdnv", "collapse", ("features", "labels"), lower_is_more_similar=True),
        Metric("direction_accuracy", "collapse", ("features", "labels")),
        # invariance: how a layer keeps the augmented views of a sample together (views datasets only)
        Metric("infonce", "invariance", ("features", "views")),
        Metric("infonce_normalized", "invariance", ("features", "views")),
        Metric("lidar", "invariance", ("features", "views")),
        Metric("lidar_entropy", "invariance", ("features", "views")),
        Metric("dime", "invariance", ("features", "views")),
        # information: token-level entropy and curvature per layer (stores with a token level only)
        Metric("prompt_entropy", "information", ("tokens",)),
        Metric("prompt_entropy_raw", "information", ("tokens",)),
        Metric("dataset_entropy", "information", ("features", "tokens")),
        Metric("curvature", "information", ("tokens",)),
        # contextuality: word occurrences across contexts and token anisotropy (stores with a token level only)
        *(Metric(name, "contextuality", ("tokens",)) for name in (
            "self_similarity", "self_similarity_adjusted", "intra_sentence", "intra_sentence_adjusted", "mev",
            "mev_adjusted", "word_anisotropy", "token_anisotropy", "token_anisotropy_centred")),
        # alignment of two models' layers (PRH family)
        Metric("mutual_knn", "alignment", ("graphs",), space="cosine", per_sample="mutual_knn_per_sample"),
        Metric("cycle_knn_ab", "alignment", ("graphs",), space="cosine", per_sample="cycle_knn_ab_per_sample"),
        Metric("cycle_knn_ba", "alignment", ("graphs",), space="cosine", per_sample="cycle_knn_ba_per_sample"),
        Metric("lcs_knn", "alignment", ("graphs",), space="cosine", per_sample="lcs_knn_per_sample"),
        Metric("cka", "alignment", ("features",), dense=True),
        Metric("unbiased_cka", "alignment", ("features",), dense=True),
        Metric("cknna", "alignment", ("features", "graphs"), space="cosine", dense=True),
        Metric("svcca", "alignment", ("features",), dense=True),
        # more similarity measures (groups: repbench.metrics.alignment.dense / .neighborhoods)
        Metric("rsa", "alignment", ("features",), dense=True, group="dense"),
        Metric("procrustes", "alignment", ("features",), dense=True, lower_is_more_similar=True, group="dense"),
        Metric("shape_metric", "alignment", ("features",), dense=True, lower_is_more_similar=True, group="dense"),
        Metric("pwcca", "alignment", ("features",), dense=True, group="dense"),
        Metric("rv", "alignment", ("features",), dense=True),  # = linear CKA; computed with it
        Metric("cka_rbf", "alignment", ("features",), dense=True, group="dense"),
        Metric("jaccard_knn", "alignment", ("graphs",), space="cosine", group="neighborhoods"),
        Metric("rank_sim", "alignment", ("graphs",), space="cosine", group="neighborhoods"),
        # second-order cosine: cosines at the other model's neighbours, O(N·k·D) feature work per layer pair
        Metric("second_order_cos", "alignment", ("graphs", "features"), space="cosine", dense=True,
               group="neighborhoods"),
        # information imbalance: ranks beyond the stored graph come from O(N²·D) distance counts, hence dense
        Metric("info_imbalance_ab", "alignment", ("graphs", "features"), space="euclidean", dense=True,
               lower_is_more_similar=True, group="neighborhoods"),
        Metric("info_imbalance_ba", "alignment", ("graphs", "features"), space="euclidean", dense=True,
               lower_is_more_similar=True, group="neighborhoods"),
    )
}


def names(family: str) -> tuple[str, ...]:
    """Metric names of ``family`` in registry order."""
    if family not in FAMILIES:
        raise KeyError(f"unknown metric family {family!r} (known: {', '.join(FAMILIES)})")
    return tuple(m.name for m in METRICS.values() if m.family == family)


def reads(metric_names, what: str) -> tuple[str, ...]:
    """The metrics among ``metric_names`` that read ``what`` (features, graphs or spectra)."""
    return tuple(n for n in metric_names if what in METRICS[n].reads)


def dense(metric_names) -> tuple[str, ...]:
    """The metrics among ``metric_names`` whose cost grows with products of the features."""
    return tuple(n for n in metric_names if METRICS[n].dense)


def lower_is_more_similar(metric_names) -> frozenset[str]:
    """The metrics among ``metric_names`` for which a smaller value means more alike (distances, imbalances)."""
    return frozenset(n for n in metric_names if METRICS[n].lower_is_more_similar)


def spaces_read(metric_names) -> list[str]:
    """The graph spaces the metrics ``metric_names`` read, in :data:`SPACES` order."""
    wanted = {METRICS[n].space for n in metric_names if "graphs" in METRICS[n].reads}
    return [s for s in SPACES if s in wanted]


def graph_spaces(layer_metrics, pair_metrics) -> list[str]:
    """The neighbour-graph spaces a study needs, in :data:`SPACES` order.

    ``layer_metrics``: the chosen metrics of the per-layer families; ``pair_metrics``: the alignment metrics of a
    study that has pairs (empty when it has none).
    """
    return spaces_read((*layer_metrics, *pair_metrics))
