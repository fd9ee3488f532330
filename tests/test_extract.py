"""Extraction: pooling against hand computation, hooks against output_hidden_states, store layout, errors, resume."""

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

from repbench import store
from repbench.data import DatasetError, load_samples
from repbench.extract import LayerPooler, NonFiniteActivationError, check_finite, extract, pad_batch, plan_batches, pool
from repbench.models import ModelLoadError, load_model

DATASET = {"source": "builtin", "name": "python-docs", "n_samples": 24, "seed": 0, "max_length": 24, "min_chars": 1}
OPTIONS = {"poolings": ["mean", "last", "first"], "store_dtype": "float32", "device": "cpu", "token_budget": 256,
           "max_batch_size": 8, "chunk_mb": 0.001}


def test_pool_matches_hand_computation():
    h = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)
    # sample 0: tokens 0..2 real (right padding); sample 1: tokens 2..3 real (left padding)
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1]])
    out = pool(h, mask, ["mean", "last", "first"])
    assert out["mean"].tolist() == [[2.0, 3.0], [13.0, 14.0]]  # (0+2+4)/3, (1+3+5)/3 ; (12+14)/2, (13+15)/2
    assert out["last"].tolist() == [[4.0, 5.0], [14.0, 15.0]]
    assert out["first"].tolist() == [[0.0, 1.0], [12.0, 13.0]]


@pytest.mark.parametrize("architecture,extra", [
    ("bert", {}), ("gpt_neox", {}), ("llama", {"num_key_value_heads": 1}),
])
@pytest.mark.parametrize("side", ["right", "left"])
def test_hooks_equal_output_hidden_states(architecture, extra, side):
    spec = dict(TINY_BERT, architecture=architecture, config={**TINY_BERT["config"], **extra})
    loaded = load_model("t", spec)
    tok = loaded.tokenizer
    enc = tok(["hello world this is", "a b", "one two three four five six"])["input_ids"]
    ids, mask = pad_batch(enc, tok.pad_token_id, side)
    pooler = LayerPooler(loaded.model, ["mean", "last", "first"])
    got = pooler(ids, mask)
    pooler.remove()
    with torch.no_grad():
        hidden = loaded.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert pooler.n_layers == len(hidden) == 3
    for p, value in got.items():
        ref = torch.stack([pool(h, mask, [p])[p] for h in hidden])
        torch.testing.assert_close(value, ref, rtol=0, atol=0)


def test_plan_batches_respects_budget_and_covers_everything():
    lengths = np.array([5, 30, 7, 12, 30, 1, 9])
    batches = plan_batches(lengths, token_budget=40, max_batch_size=4, batch_size=None)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    for b in batches:
        assert len(b) * lengths[b].max() <= 40 or len(b) == 1
    assert lengths[batches[0][0]] == 30  # longest first
    fixed = plan_batches(lengths, token_budget=1, max_batch_size=1, batch_size=3)
    assert [len(b) for b in fixed] == [3, 3, 1]


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


def test_float16_store_and_overflow_error():
    arr = {"mean": np.array([[[1.0, 70000.0]]], dtype=np.float32)}
    with pytest.raises(NonFiniteActivationError, match="layer 0, sample 's0'.*overflows float16"):
        check_finite(arr, "float16", "m", ["s0"])
    check_finite(arr, "float32", "m", ["s0"])
    arr["mean"][0, 0, 0] = np.nan
    with pytest.raises(NonFiniteActivationError, match="model 'm'.*layer 0, sample 's0'.*NaN"):
        check_finite(arr, "float32", "m", ["s0"])


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
real = ex._run_chunk
def slow(*a, **k):
    time.sleep(0.3)
    return real(*a, **k)
ex._run_chunk = slow
ex.extract(model_name="tiny", model_spec={spec!r}, revision=None, dataset_name="docs", dataset_spec={dataset!r},
           options={options!r}, output={out!r}, partial_root={partial!r}, progress=False)
"""


def test_killed_extraction_resumes_to_identical_store(tmp_path):
    options = dict(OPTIONS, chunk_mb=0.0005)  # 4 samples per chunk → 6 chunks
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
    real = ex._run_chunk
    try:
        ex._run_chunk = lambda *a, **k: calls.append(1) or real(*a, **k)
        run_extract(tmp_path, options=options)
    finally:
        ex._run_chunk = real
    assert len(calls) == 6 - len(done_before)
    a, b = xr.open_zarr(reference), xr.open_zarr(out)
    for p in OPTIONS["poolings"]:
        np.testing.assert_array_equal(a[p].values, b[p].values)
    assert a.attrs["config_hash"] == b.attrs["config_hash"]
