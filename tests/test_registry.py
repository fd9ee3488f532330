"""repbench.registry: the one list of metrics agrees with every family module, the schema and the config checks."""

import subprocess
import sys

import pytest
from conftest import ROOT

from repbench import registry
from repbench.config import chosen_metrics, schema_defaults, validate_config
from repbench.metrics import (
    alignment,
    clusters,
    collapse,
    contextuality,
    geometry,
    information,
    intrinsic_dim,
    invariance,
    probes,
    spectral,
)

FAMILY_MODULES = {"geometry": geometry.METRICS, "spectral": spectral.METRICS,
                  "intrinsic_dim": intrinsic_dim.ESTIMATORS, "probes": probes.METRICS, "clusters": clusters.METRICS,
                  "collapse": collapse.METRICS, "invariance": invariance.METRICS, "information": information.METRICS,
                  "contextuality": contextuality.METRICS,
                  "alignment": alignment.METRICS}


@pytest.mark.parametrize("family", list(registry.FAMILIES))
def test_every_registered_metric_has_its_function_and_nothing_else(family):
    assert list(FAMILY_MODULES[family]) == list(registry.names(family))


def test_what_a_metric_reads_is_declared_consistently():
    for metric in registry.METRICS.values():
        assert set(metric.reads) <= {"features", "graphs", "spectra", "labels", "views", "tokens"}, metric
        assert ("labels" in metric.reads) == (metric.family in registry.LABEL_FAMILIES), metric
        assert ("views" in metric.reads) == (metric.family in registry.VIEW_FAMILIES), metric
        assert ("tokens" in metric.reads) == (metric.family in registry.TOKEN_FAMILIES), metric
        assert (metric.space is not None) == ("graphs" in metric.reads), metric
        assert metric.space in (None, *registry.SPACES)
        if metric.per_sample:
            terms = getattr(alignment, metric.per_sample)  # the family module has the per-sample form
            assert callable(terms)
    for name, entry in alignment.METRICS.items():
        assert entry.uses_graphs == ("graphs" in registry.METRICS[name].reads)
        assert entry.uses_features == ("features" in registry.METRICS[name].reads)


def test_per_sample_terms_average_to_the_metric():
    import numpy as np

    rng = np.random.default_rng(0)
    n, k = 40, 5
    graphs = [np.stack([rng.permutation(np.delete(np.arange(n), i))[:k] for i in range(n)]) for _ in range(2)]
    for name in registry.names("alignment"):
        per_sample = registry.METRICS[name].per_sample
        if per_sample:
            terms = getattr(alignment, per_sample)(graphs[0], graphs[1], k)
            assert terms.mean() == pytest.approx(alignment.METRICS[name](idx_a=graphs[0], idx_b=graphs[1], k=k))


def test_schema_defaults_name_registered_metrics_only():
    config = validate_config({"datasets": {"d": {"source": "builtin"}},
                              "models": {"m": {"source": "hf", "id": "org/x"}}})
    assert config["metrics"]["families"] == list(registry.LAYER_FAMILIES)
    for family in registry.FAMILIES:
        assert set(chosen_metrics(config, family)) <= set(registry.names(family))
    assert set(config["alignment"]["null_metrics"]) <= set(registry.names("alignment"))
    assert schema_defaults("metrics", "intrinsic_dim") == config["metrics"]["intrinsic_dim"]


def test_registry_imports_no_numpy():
    code = "import sys; import repbench.registry; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT / "workflow").stdout
    assert out.strip() == "False"
