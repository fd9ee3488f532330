"""A resumed extraction batches with the token budget (and back-off cap) its interrupted run recorded, not with one
resolved again (``auto`` on a GPU depends on the memory free when the job starts), and gives the same store as an
uninterrupted run. On a CPU always; on a GPU too where there is one (``[cuda]``: the first run's budget is the real
``auto`` one, from the free GPU memory)."""

import json

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from extract_common import DATASET, OPTIONS

import repbench.extract as ex
from repbench.data import load_samples

# 6 chunks of 4 samples, one unit each; an automatic budget (resolved by the patched auto_token_budget)
RESUME_OPTIONS = dict(OPTIONS, token_budget="auto", chunk_mb=0.0005, unit_mb=1e-6)


def word_tokenizer(path):
    """A word-level tokenizer over the test dataset's words, saved as a Hugging Face tokenizer directory (no
    packaged model needed, so the test also runs on a bare GPU machine)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(load_samples("docs", DATASET).texts,
                            trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    fast.save_pretrained(str(path))
    return str(path)


class Killed(RuntimeError):
    pass


def run(tmp_path, spec, options, budget=None, kill_at=None, budgets=None):
    """One extraction; ``budget``: what ``auto`` resolves to (None: the real resolution); ``kill_at``: the unit whose
    input preparation raises (the job dies there); ``budgets`` collects the budget each unit was batched with."""
    real_prepare, real_auto = ex.TextFeed.prepare, ex.auto_token_budget
    calls = []

    def prepare(self, lo, hi, budget_, *args):
        calls.append(budget_)
        if kill_at is not None and len(calls) > kill_at:
            raise Killed("simulated kill")
        return real_prepare(self, lo, hi, budget_, *args)

    ex.TextFeed.prepare = prepare
    if budget is not None:
        ex.auto_token_budget = lambda *a, **k: budget
    try:
        out = tmp_path / "acts" / "tiny.zarr"
        ex.extract(model_name="tiny", model_spec=spec, revision=None, dataset_name="docs", dataset_spec=DATASET,
                   options=options, output=out, partial_root=tmp_path / "partial", progress=False)
        return out
    finally:
        ex.TextFeed.prepare, ex.auto_token_budget = real_prepare, real_auto
        if budgets is not None:
            budgets.extend(calls)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="needs a CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
def test_resume_batches_with_the_recorded_budget(tmp_path, device):
    spec = {"source": "random", "architecture": "bert", "tokenizer": word_tokenizer(tmp_path / "tok"), "seed": 0,
            "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "intermediate_size": 64}}
    options = dict(RESUME_OPTIONS, device=device)
    # the original job's budget: on CUDA the real automatic one (free memory); on a CPU a small one (2 per batch)
    first = None if device == "cuda" else 48
    reference = run(tmp_path / "ref", spec, options, budget=first)

    job = tmp_path / "job"
    with pytest.raises(Killed):
        run(job, spec, options, budget=first, kill_at=3)
    (progress,) = (job / "partial").glob("tiny.*/progress.json")
    state = json.loads(progress.read_text())
    assert 1 <= len(state["chunks"]) < 6 and state["device"] == device
    recorded = state["token_budget"]
    assert state["token_cap"] == recorded and (device == "cuda" or recorded == 48)
    assert not (job / "acts" / "tiny.zarr").exists()

    # resume where ``auto`` would now resolve to a budget that batches differently (1 vs 2 samples per batch, or
    # all 4 of a unit where the recorded budget is small)
    other = 24 if recorded >= 48 else 4096
    budgets = []
    out = run(job, spec, options, budget=other, budgets=budgets)
    assert budgets and set(budgets) == {recorded}  # every unit batched with the recorded budget
    assert len(budgets) == 6 - len(state["chunks"])  # only the unfinished units (one chunk each)
    a, b = xr.open_zarr(reference), xr.open_zarr(out)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert zarr.open_group(str(out), mode="r").attrs["token_budget"] == recorded


def test_resume_keeps_the_backed_off_cap(tmp_path):
    """A cap lowered by CUDA out-of-memory (simulated) is recorded and a resumed job starts from it."""
    spec = {"source": "random", "architecture": "bert", "tokenizer": word_tokenizer(tmp_path / "tok"), "seed": 0,
            "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "intermediate_size": 64}}
    real = ex.LayerPooler.__call__

    def flaky(self, input_ids=None, attention_mask=None, **kw):
        if input_ids is not None and input_ids.numel() > 40:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(self, input_ids, attention_mask, **kw)

    ex.LayerPooler.__call__ = flaky
    try:
        with pytest.raises(Killed):
            run(tmp_path, spec, RESUME_OPTIONS, budget=4096, kill_at=3)
    finally:
        ex.LayerPooler.__call__ = real
    (progress,) = (tmp_path / "partial").glob("tiny.*/progress.json")
    state = json.loads(progress.read_text())
    assert state["token_budget"] == 4096 and state["token_cap"] <= 40
    budgets = []
    run(tmp_path, spec, RESUME_OPTIONS, budget=8192, budgets=budgets)
    assert budgets and set(budgets) == {state["token_cap"]}


def test_resume_state_helpers():
    from repbench.extract.loop import resume_state, resumed_budget

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    state = resume_state({3, 1}, 4096, 512, cuda)
    assert state == {"chunks": [1, 3], "token_budget": 4096, "token_cap": 512, "device": "cuda"}
    assert resumed_budget(state, cuda) == (4096, 512)
    assert resumed_budget(state, cpu) is None  # moved between CPU and GPU: resolved again
    assert resumed_budget({"chunks": [1]}, cpu) is None  # a progress file from before budgets were recorded
    assert resumed_budget(dict(state, chunks=[]), cuda) is None  # nothing done yet: a fresh start
