"""Contextuality (Ethayarajh 2019) and token anisotropy: dense formulas and planted truth."""

import itertools
import math

import numpy as np
import pytest

from repbench.metrics import contextuality as ctx


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_self_similarity_intra_sentence_and_mev_equal_their_formulas():
    rng = np.random.default_rng(0)
    occ = rng.normal(size=(6, 9)) + 1
    pairs = [cos(occ[i], occ[j]) for i, j in itertools.permutations(range(6), 2)]
    assert ctx.self_similarity(occ) == pytest.approx(np.mean(pairs), abs=1e-12)
    mean = occ.mean(axis=0)
    assert ctx.intra_sentence(occ) == pytest.approx(np.mean([cos(mean, o) for o in occ]), abs=1e-12)
    eig = np.linalg.eigvalsh(occ.T @ occ)  # uncentred: σ² are the eigenvalues of XᵀX
    assert ctx.mev(occ) == pytest.approx(eig.max() / eig.sum(), abs=1e-12)


def corpus(rng, n_prompts=12, d=16, noise=0.0, shared=None):
    """Prompts of 4 words each; word type k (token ids (k, k+100)) spelled by two tokens; the same 3 types recur in
    every prompt, one type per prompt is unique. ``shared``: per type, the vector all its tokens take."""
    tokens, words, ids, offsets = [], [], [], [0]
    for s in range(n_prompts):
        types = [0, 1, 2, 10 + s]
        for w, k in enumerate(types):
            for part in range(2):
                base = shared[k] if shared is not None and k in shared else rng.normal(size=d)
                tokens.append(base + noise * rng.normal(size=d))
                words.append(w)
                ids.append(k + 100 * part)
        offsets.append(len(tokens))
    return np.asarray(tokens), np.asarray(offsets), np.asarray(words), np.asarray(ids)


def test_word_occurrences_average_their_sub_word_tokens():
    tokens, offsets, words, ids = corpus(np.random.default_rng(1), n_prompts=2)
    vectors, prompts, types = ctx.word_occurrences(tokens, offsets, words, ids)
    assert len(vectors) == 8 and prompts.tolist() == [0] * 4 + [1] * 4
    assert types[:4] == [(0, 100), (1, 101), (2, 102), (10, 110)]
    np.testing.assert_allclose(vectors[1], tokens[2:4].mean(axis=0))


def test_layer_metrics_agree_with_the_pieces():
    rng = np.random.default_rng(2)
    tokens, offsets, words, ids = corpus(rng, noise=0.5, shared={k: rng.normal(size=16) * 2 for k in range(3)})
    rows = {r["metric"]: r for r in ctx.layer_metrics(tokens, offsets, words, ids, True, {"n_pairs": 500})}
    vectors, prompts, types = ctx.word_occurrences(tokens, offsets, words, ids)
    frequent = [[i for i, t in enumerate(types) if t == (k, k + 100)] for k in range(3)]
    assert rows["self_similarity"]["n"] == 3  # the unique words occur once: left out
    assert rows["self_similarity"]["value"] == pytest.approx(np.mean([ctx.self_similarity(vectors[f])
                                                                      for f in frequent]), abs=1e-12)
    assert rows["mev"]["value"] == pytest.approx(np.mean([ctx.mev(vectors[f]) for f in frequent]), abs=1e-12)
    assert rows["intra_sentence"]["n"] == 12
    first, second = ctx.random_pairs(prompts, 500, np.random.default_rng(0))
    assert (prompts[first] != prompts[second]).all()
    base = np.mean([cos(vectors[i], vectors[j]) for i, j in zip(first, second)])
    assert rows["word_anisotropy"]["value"] == pytest.approx(base, abs=1e-12)
    assert rows["self_similarity_adjusted"]["value"] == pytest.approx(rows["self_similarity"]["value"] - base)
    assert rows["mev_adjusted"]["value"] == pytest.approx(rows["mev"]["value"] - ctx.mev(vectors[first]))
    token_prompt = np.repeat(np.arange(12), 8)
    f2, s2 = ctx.random_pairs(token_prompt, 500, np.random.default_rng(0))
    centred = tokens - tokens.mean(axis=0)
    assert rows["token_anisotropy"]["value"] == pytest.approx(np.mean([cos(tokens[i], tokens[j])
                                                                       for i, j in zip(f2, s2)]), abs=1e-12)
    assert rows["token_anisotropy_centred"]["value"] == pytest.approx(
        np.mean([cos(centred[i], centred[j]) for i, j in zip(f2, s2)]), abs=1e-12)


def test_identical_occurrences_give_self_similarity_and_mev_one():
    rng = np.random.default_rng(3)
    tokens, offsets, words, ids = corpus(rng, shared={k: rng.normal(size=16) for k in range(3)})
    rows = {r["metric"]: r["value"] for r in ctx.layer_metrics(tokens, offsets, words, ids, True)}
    assert rows["self_similarity"] == pytest.approx(1, abs=1e-12) and rows["mev"] == pytest.approx(1, abs=1e-12)


def test_random_gaussian_occurrences_match_their_expectations():
    rng = np.random.default_rng(4)
    n, d = 8, 4096
    occ = rng.normal(size=(n, d))
    assert abs(ctx.self_similarity(occ)) < 0.01
    assert ctx.intra_sentence(occ) == pytest.approx(1 / math.sqrt(n), abs=0.01)
    assert ctx.mev(occ) == pytest.approx((1 + math.sqrt(n / d)) ** 2 / n, rel=0.05)
    big = rng.normal(size=(2000, 256))
    first, second = ctx.random_pairs(np.arange(2000) // 10, 1000, rng)
    assert abs(ctx.mean_pair_cosine(big, first, second)) < 0.01
    assert ctx.mean_pair_cosine(big + 5, first, second) > 0.9  # a common direction: anisotropic …
    assert abs(ctx.mean_pair_cosine(big + 5 - (big + 5).mean(axis=0), first, second)) < 0.01  # … until removed


def test_without_word_ids_the_word_metrics_say_why():
    tokens, offsets, words, ids = corpus(np.random.default_rng(5))
    rows = {r["metric"]: r for r in ctx.layer_metrics(tokens, offsets, -np.ones_like(words), ids, False)}
    for m in ctx.WORD_METRICS:
        assert math.isnan(rows[m]["value"]) and "no word ids" in rows[m]["reason"]
    assert not math.isnan(rows["token_anisotropy"]["value"])
    few = {r["metric"]: r for r in ctx.layer_metrics(tokens[:8], offsets[:2], words[:8], ids[:8], True)}
    assert math.isnan(few["self_similarity"]["value"]) and "5 or more" in few["self_similarity"]["reason"]
    assert math.isnan(few["token_anisotropy"]["value"]) and "fewer than 2 prompts" in few["token_anisotropy"]["reason"]


# ------------------------------------------------------------------ the authors' own values
def test_self_similarity_mev_and_intra_sentence_match_the_authors_code():
    """kawine/contextual analyze.py on the same word vectors (tests/fixtures/make_contextuality_reference.py); the
    peer rounds to 3 decimals and its MEV is a centred PCA (ours is the paper's uncentred one)."""
    import json
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    from make_contextuality_reference import make_corpus, word2sent

    ref = json.loads((ROOT / "tests" / "fixtures" / "contextuality_reference.json").read_text())
    vectors, sentences = make_corpus()
    assert np.allclose([sum(v.sum() for v in vectors), sum((v ** 2).sum() for v in vectors)], ref["checksum"])
    index = word2sent(sentences)
    assert sorted(index) == ref["words"]
    for word, occurrences in index.items():
        for layer in range(len(vectors[0])):
            occ = np.stack([vectors[s][layer, i] for s, i in occurrences])
            assert ctx.self_similarity(occ) == pytest.approx(ref["self_similarity"][word][f"layer_{layer}"],
                                                             abs=5e-4)
            if layer > 0:  # the peer skips the input layer for MEV
                assert ctx.mev(occ - occ.mean(axis=0)) == pytest.approx(ref["mev_centred"][word][f"layer_{layer}"],
                                                                        abs=5e-4)
    for layer in range(len(vectors[0])):
        intra = np.mean([ctx.intra_sentence(v[layer]) for v in vectors])
        assert intra == pytest.approx(ref["intra_sentence"][f"layer_{layer}"], abs=1e-3)  # rounded twice
