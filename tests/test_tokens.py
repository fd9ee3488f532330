"""Token level (extract.tokens): the ragged token store against output_hidden_states, its layout and its errors."""

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import TINY_BERT

from repbench import store
from repbench.data import load_samples
from repbench.extract import NonFiniteActivationError, extract
from repbench.extract import tokens as T
from repbench.models import load_model

TRUTH = {"source": "builtin", "name": "truth", "n_samples": 30, "seed": 0, "max_length": 12}
TOKENS = {"enabled": True, "n_samples": 7, "layers": None, "dtype": "float32", "max_gb": 1, "seed": 0}
OPTIONS = {"poolings": ["mean", "last"], "store_dtype": "float32", "device": "cpu", "chunk_mb": 0.001,
           "token_budget": 64, "max_batch_size": 4}
VIT = {"source": "random", "architecture": "vit", "modality": "vision", "seed": 0,
       "config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      image_size=32, patch_size=8)}
DIGITS = {"source": "builtin", "name": "digits", "modality": "vision", "n_samples": 12, "seed": 0}


def run(tmp_path, spec=TINY_BERT, dataset=TRUTH, tokens=TOKENS, options=OPTIONS, name="m"):
    out = tmp_path / f"{name}.zarr"
    extract(model_name=name, model_spec=dict(spec), revision=None, dataset_name="d", dataset_spec=dataset,
            options=dict(options, tokens=tokens), output=out, partial_root=tmp_path / "partial", progress=False)
    return out


def test_text_tokens_equal_output_hidden_states(tmp_path):
    out = run(tmp_path)
    ds = xr.open_zarr(out)
    samples = load_samples("d", TRUTH)
    ids = [str(s) for s in ds["token_sample"].values]
    assert len(ids) == 7 and ids == [samples.ids[r] for r in T.subset_rows(30, 7, 0)]
    loaded = load_model("m", dict(TINY_BERT), None)
    offsets = ds["token_offsets"].values
    assert offsets[0] == 0 and offsets[-1] == ds.sizes["token"] == ds.attrs["n_tokens"]
    assert ds["token_layer"].values.tolist() == [0, 1, 2] and ds.attrs["token_word_ids"] == "tokenizer"
    for j, sid in enumerate(ids):
        text = samples.texts[samples.ids.index(sid)]
        enc = loaded.tokenizer([text], truncation=True, max_length=12, return_tensors="pt")
        with torch.no_grad():
            hidden = loaded.model(**enc, output_hidden_states=True).hidden_states
        n = enc["input_ids"].shape[1]
        assert offsets[j + 1] - offsets[j] == n
        for layer in range(3):
            block = store.sample_tokens(out, sid, layer)
            np.testing.assert_allclose(block["vectors"], hidden[layer][0].numpy(), atol=1e-6)
            np.testing.assert_array_equal(block["token_id"], enc["input_ids"][0].numpy())
            np.testing.assert_array_equal(block["position"], np.arange(n))
            words = [-1 if w is None else w for w in loaded.tokenizer([text], truncation=True,
                                                                      max_length=12).word_ids(0)]
            np.testing.assert_array_equal(block["word"], words)
            assert not block["prefix"].any()
            pooled = ds["mean"].sel(sample=sid).values[layer]  # the stored mean pooling is the token mean
            np.testing.assert_allclose(pooled, block["vectors"].mean(0), atol=1e-6)
    chunk_bytes = np.prod(store.zarr.open_group(str(out))["tokens"].chunks) * 4  # one layer's tokens, up to 1 MiB
    assert chunk_bytes >= min(2**20, ds["tokens"].nbytes // ds.sizes["token_layer"])


def test_truncation_layers_and_float16(tmp_path):
    long = dict(TRUTH, max_length=6)  # every statement has more than 6 tokens
    out = run(tmp_path, dataset=long, tokens=dict(TOKENS, layers=[-1, 0], dtype="float16"))
    ds = xr.open_zarr(out)
    assert ds["token_truncated"].values.all() and ds["tokens"].dtype == np.float16
    assert ds["token_layer"].values.tolist() == [0, 2]
    assert (np.diff(ds["token_offsets"].values) == 6).all()
    with pytest.raises(KeyError, match=r"layer 1 has no stored tokens \(token layers: \[0, 2\]\)"):
        store.sample_tokens(out, str(ds["token_sample"].values[0]), 1)
    with pytest.raises(KeyError, match="has no stored tokens"):
        store.sample_tokens(out, "nope", 0)


def test_vision_patch_tokens_with_the_prefix_flagged(tmp_path):
    out = run(tmp_path, spec=VIT, dataset=DIGITS, tokens=dict(TOKENS, n_samples=5))
    ds = xr.open_zarr(out)
    assert ds.sizes["token"] == 5 * 17  # CLS + 16 patches of 8×8 in a 32×32 image
    sid = str(ds["token_sample"].values[1])
    block = store.sample_tokens(out, sid, 2)
    assert block["prefix"].tolist() == [True] + [False] * 16 and (block["token_id"] == -1).all()
    from repbench.extract import ImageFeed

    loaded = load_model("v", dict(VIT), None)
    samples = load_samples("d", DIGITS)
    i = samples.ids.index(sid)
    pixels = ImageFeed(loaded.image_processor, samples.images).pixels(i, i + 1)
    with torch.no_grad():
        hidden = loaded.model(pixel_values=pixels, output_hidden_states=True).hidden_states
    for layer in range(3):
        np.testing.assert_allclose(store.sample_tokens(out, sid, layer)["vectors"], hidden[layer][0].numpy(),
                                   atol=1e-5)
    assert ds.attrs["token_word_ids"] == "n/a (images)"


def test_a_token_array_beyond_max_gb_is_refused_before_writing(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"extract\.tokens\.max_gb.*extract\.tokens\.n_samples.*"
                                         r"extract\.tokens\.layers") as err:
        run(tmp_path, tokens=dict(TOKENS, max_gb=1e-6))
    assert "model 'm' on dataset 'd'" in str(err.value)
    assert "token level: 7 samples" in capsys.readouterr().out
    assert not list((tmp_path / "partial").glob("*")) and not (tmp_path / "m.zarr").exists()


def test_unknown_token_layer_is_an_error():
    with pytest.raises(ValueError, match=r"extract.tokens.layers: layer 5 does not exist"):
        T.resolve_layers([5], 3)
    assert T.resolve_layers([-1, 0, 2], 3) == [0, 2]


def test_a_tokenizer_without_word_ids_says_so():
    class Slow:  # a "slow" tokenizer: no word_ids
        def __call__(self, texts, truncation=True, max_length=None, add_special_tokens=True):
            ids = [[1] + [5] * len(t.split()) + [2] for t in texts]
            if truncation and max_length:
                ids = [i[:max_length] for i in ids]
            return {"input_ids": ids}

    plan = T.text_plan(dict(TOKENS, n_samples=3), Slow(), ["a b c", "d e", "f g h i j"], 5, 2)
    assert plan.word_ids == "unavailable" and (plan.word == -1).all()
    assert plan.truncated.tolist() == [False, False, True] and plan.offsets.tolist() == [0, 5, 9, 14]


def test_non_finite_token_vectors_name_model_layer_and_sample():
    plan = T.TokenPlan(np.array([1, 4]), [0, 3], np.array([0, 2, 5]), np.zeros(5, np.int32), np.zeros(5, np.int32),
                       np.zeros(5, np.int32), np.zeros(5, bool), np.zeros(2, bool), "tokenizer", "float16")
    values = np.zeros((2, 5, 4), dtype=np.float32)
    from repbench.extract.loop import check_token_values

    check_token_values((0, 5, values), plan, "m", ["s0", "s1", "s2", "s3", "s4"])
    values[1, 3, 2] = np.nan
    with pytest.raises(NonFiniteActivationError, match=r"model 'm': token vector at layer 3, sample 's4' is non"):
        check_token_values((0, 5, values), plan, "m", ["s0", "s1", "s2", "s3", "s4"])
    values[1, 3, 2] = 1e6
    with pytest.raises(NonFiniteActivationError, match="beyond float16's range"):
        check_token_values((0, 5, values), plan, "m", ["s0", "s1", "s2", "s3", "s4"])
