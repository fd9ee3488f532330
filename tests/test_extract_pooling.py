"""repbench.extract.pooling: pooling against hand computation, hooks against output_hidden_states, causal probe."""

import pytest
import torch
from conftest import TINY_BERT

from repbench.extract.feeds import pad_batch
from repbench.extract.pooling import LayerPooler, is_causal, pool
from repbench.models import load_model


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
