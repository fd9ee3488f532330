"""Contextuality of one layer (Ethayarajh 2019) and token anisotropy, on the token level.

Input per layer: the stored tokens (token, D), ``offsets`` (S + 1) and each token's ``word`` index (−1: special
token or unknown) and ``token_id``. A *word occurrence* is one word of one prompt: the mean of its sub-word token
vectors. A *word type* is the sequence of token ids spelling it (no tokenizer needed to compare words).

- **self_similarity**: for each word type with at least ``min_occurrences`` (5) occurrences o₁…oₙ, the mean cosine
  over all ordered pairs i ≠ j, (Σᵢⱼ ôᵢ·ôⱼ − n)/(n(n − 1)); averaged over the word types. 1 when a word's
  occurrences point the same way whatever the context.
- **intra_sentence**: for each prompt with at least 2 words, (1/n) Σᵢ cos(s̄, oᵢ) with s̄ the mean of its word
  occurrences; averaged over the prompts.
- **mev** (maximum explainable variance): for each word type as above, σ₁²/Σⱼσⱼ² of the uncentred n × D matrix of
  its occurrences (the paper's definition); averaged over the word types. 1 when a static vector explains them.
- **word_anisotropy** (the baseline): mean cosine of ``n_pairs`` seeded pairs of word occurrences from two different
  prompts (prompts drawn uniformly, then one occurrence of each).
- **\\*_adjusted**: self_similarity and intra_sentence minus word_anisotropy; mev minus the MEV of the ``n_pairs``
  baseline occurrences of the first side (a random sample of occurrences, as the paper adjusts).
- **token_anisotropy**: mean cosine of ``n_pairs`` seeded pairs of tokens (any stored token) from two different
  prompts; **token_anisotropy_centred**: the same after subtracting the layer's mean token vector (a common
  direction versus a narrow cone). These two need no word ids (vision patch tokens too).

Word-level metrics need the tokenizer's word ids: without them (the store's ``token_word_ids`` is not
``tokenizer``) they are NaN with a reason, never a silent number.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

METRICS = ("self_similarity", "self_similarity_adjusted", "intra_sentence", "intra_sentence_adjusted", "mev",
           "mev_adjusted", "word_anisotropy", "token_anisotropy", "token_anisotropy_centred")
WORD_METRICS = METRICS[:7]
DEFAULTS = {"min_occurrences": 5, "n_pairs": 1000, "seed": 0}


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def word_occurrences(tokens: np.ndarray, offsets: np.ndarray, word: np.ndarray, token_id: np.ndarray):
    """``(vectors (W, D), prompt (W,), types (W,) tuples of token ids)``: every word occurrence, prompt by prompt."""
    vectors, prompts, types = [], [], []
    for s in range(len(offsets) - 1):
        a, b = int(offsets[s]), int(offsets[s + 1])
        words = word[a:b]
        for w in np.unique(words[words >= 0]):
            rows = a + np.flatnonzero(words == w)
            vectors.append(tokens[rows].mean(axis=0))
            prompts.append(s)
            types.append(tuple(int(t) for t in token_id[rows]))
    d = tokens.shape[1]
    return (np.asarray(vectors, dtype=np.float64).reshape(-1, d), np.asarray(prompts, dtype=np.int64), types)


def self_similarity(occurrences: np.ndarray) -> float:
    """Mean cosine over ordered pairs i ≠ j of one word's occurrences (n ≥ 2)."""
    u = _unit(np.asarray(occurrences, dtype=np.float64))
    n = len(u)
    total = u.sum(axis=0)
    return float((total @ total - (u * u).sum()) / (n * (n - 1)))


def intra_sentence(words: np.ndarray) -> float:
    """(1/n) Σᵢ cos(s̄, oᵢ) of one prompt's word occurrences (n ≥ 2)."""
    words = np.asarray(words, dtype=np.float64)
    mean = _unit(words.mean(axis=0))
    return float((_unit(words) @ mean).mean())


def mev(occurrences: np.ndarray) -> float:
    """σ₁²/Σσⱼ² of the uncentred occurrence matrix (n × D)."""
    s = np.linalg.svd(np.asarray(occurrences, dtype=np.float64), compute_uv=False)
    return float(s[0] ** 2 / (s ** 2).sum())


def random_pairs(groups: np.ndarray, n_pairs: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` (i, j) of items from two different groups: two distinct groups uniformly, then an item of each."""
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    if len(members) < 2:
        raise ValueError("pairs from different prompts need at least 2 prompts")
    first, second = [], []
    for _ in range(n_pairs):
        g, h = rng.choice(len(members), size=2, replace=False)
        first.append(rng.choice(members[g]))
        second.append(rng.choice(members[h]))
    return np.asarray(first), np.asarray(second)


def mean_pair_cosine(x: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    u = _unit(np.asarray(x, dtype=np.float64))
    return float(np.einsum("pd,pd->p", u[first], u[second]).mean())


def layer_metrics(tokens: np.ndarray, offsets: np.ndarray, word: np.ndarray, token_id: np.ndarray,
                  word_ids: bool, params: Mapping | None = None) -> list[dict]:
    """Rows ``{metric, value, n, reason}`` of one layer (``n``: word types, prompts or pairs averaged)."""
    p = dict(DEFAULTS, **(params or {}))
    tokens = np.asarray(tokens, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    values: dict[str, tuple[float, int, str]] = {}
    token_prompt = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    if len(np.unique(token_prompt)) >= 2:
        first, second = random_pairs(token_prompt, int(p["n_pairs"]), np.random.default_rng(p["seed"]))
        values["token_anisotropy"] = (mean_pair_cosine(tokens, first, second), len(first), "")
        values["token_anisotropy_centred"] = (mean_pair_cosine(tokens - tokens.mean(axis=0), first, second),
                                              len(first), "")
    else:
        for m in ("token_anisotropy", "token_anisotropy_centred"):
            values[m] = (float("nan"), 0, "fewer than 2 prompts")
    if not word_ids:
        for m in WORD_METRICS:
            values[m] = (float("nan"), 0, "the tokenizer gives no word ids (a slow tokenizer, or image patches): "
                                          "word-level metrics are undefined")
    else:
        vectors, prompts, types = word_occurrences(tokens, offsets, np.asarray(word), np.asarray(token_id))
        by_type: dict[tuple, list[int]] = {}
        for i, t in enumerate(types):
            by_type.setdefault(t, []).append(i)
        frequent = [rows for rows in by_type.values() if len(rows) >= int(p["min_occurrences"])]
        why = f"no word type has {p['min_occurrences']} or more occurrences"
        sims = [self_similarity(vectors[rows]) for rows in frequent]
        mevs = [mev(vectors[rows]) for rows in frequent]
        values["self_similarity"] = (float(np.mean(sims)), len(sims), "") if sims else (float("nan"), 0, why)
        values["mev"] = (float(np.mean(mevs)), len(mevs), "") if mevs else (float("nan"), 0, why)
        intra = [intra_sentence(vectors[prompts == s]) for s in np.unique(prompts) if (prompts == s).sum() >= 2]
        values["intra_sentence"] = ((float(np.mean(intra)), len(intra), "") if intra
                                    else (float("nan"), 0, "no prompt with at least 2 words"))
        if len(np.unique(prompts)) >= 2:
            first, second = random_pairs(prompts, int(p["n_pairs"]), np.random.default_rng(p["seed"]))
            base = mean_pair_cosine(vectors, first, second)
            values["word_anisotropy"] = (base, len(first), "")
            base_mev = mev(vectors[first])
        else:
            base, base_mev = float("nan"), float("nan")
            values["word_anisotropy"] = (base, 0, "word occurrences of fewer than 2 prompts")
        for m, baseline in (("self_similarity", base), ("intra_sentence", base), ("mev", base_mev)):
            raw, n, reason = values[m]
            values[f"{m}_adjusted"] = (raw - baseline, n, reason or ("" if baseline == baseline else
                                                                   values["word_anisotropy"][2]))
    return [{"metric": m, "value": values[m][0], "n": values[m][1], "reason": values[m][2]} for m in METRICS]
