"""repbench.extract.loop: finite check, unit plans, OOM back-off, prefetch thread, runs without a writer."""

import numpy as np
import pytest
import torch
from conftest import TINY_BERT
from extract_common import DATASET

from repbench.data import load_samples
from repbench.extract import prepare_model
from repbench.extract.feeds import TextFeed
from repbench.extract.loop import NonFiniteActivationError, check_finite, plan_units, run_extraction, unit_plan
from repbench.models import load_model


def test_float16_store_and_overflow_error():
    arr = {"mean": np.array([[[1.0, 70000.0]]], dtype=np.float32)}
    with pytest.raises(NonFiniteActivationError, match="layer 0, sample 's0'.*overflows float16"):
        check_finite(arr, "float16", "m", ["s0"])
    check_finite(arr, "float32", "m", ["s0"])
    arr["mean"][0, 0, 0] = np.nan
    with pytest.raises(NonFiniteActivationError, match="model 'm'.*layer 0, sample 's0'.*NaN"):
        check_finite(arr, "float32", "m", ["s0"])


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


def test_extraction_without_writer_leaves_no_store(tmp_path):
    loaded = load_model("t", TINY_BERT)
    pooler, info = prepare_model(loaded, {"poolings": ["mean"]}, torch.device("cpu"), torch.float32)
    samples = load_samples("docs", DATASET)
    stats = run_extraction(pooler=pooler, feed=TextFeed(loaded.tokenizer, samples.texts, 24), sample_ids=samples.ids,
                           model_name="t", options={"poolings": ["mean"]}, device=torch.device("cpu"), chunk=8,
                           unit_chunks=1, group=None, progress=False)
    pooler.remove()
    assert stats.samples == 24 and stats.units == 3 and stats.tokens > 0 and info["attention"] == "padding mask"
