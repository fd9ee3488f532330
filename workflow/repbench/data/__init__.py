"""Datasets: each source yields ``Samples`` (ids + payloads) deterministically from its config entry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Samples:
    """A dataset's selected samples, in store order: ``ids[i]`` names ``texts[i]``."""

    ids: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """sha256 over ids and payloads: two stores with equal fingerprints saw identical inputs."""
        h = hashlib.sha256()
        for sid, text in zip(self.ids, self.texts):
            h.update(sid.encode())
            h.update(b"\0")
            h.update(text.encode())
            h.update(b"\1")
        return h.hexdigest()


class DatasetError(ValueError):
    """A dataset cannot deliver what its config entry asks for."""


def select(ids: list[str], texts: list[str], n_samples: int | None, seed: int, name: str) -> Samples:
    """Seeded selection of ``n_samples`` without replacement, kept in source order (stable ids).

    Exact duplicate texts are dropped first (keeping the first), so no two samples are identical inputs.
    """
    seen: set[str] = set()
    keep = [i for i, t in enumerate(texts) if not (t in seen or seen.add(t))]
    ids = [ids[i] for i in keep]
    texts = [texts[i] for i in keep]
    if n_samples is None:
        return Samples(ids, texts)
    if n_samples > len(ids):
        raise DatasetError(
            f"dataset {name!r}: n_samples={n_samples} but only {len(ids)} distinct usable samples exist; "
            "lower datasets.{name}.n_samples or supply more data".replace("{name}", name)
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(ids), size=n_samples, replace=False))
    return Samples([ids[i] for i in chosen], [texts[i] for i in chosen])


def load_samples(name: str, spec: dict) -> Samples:
    """Load dataset ``name`` from its (validated) config entry ``spec``."""
    from . import text

    loaders = {"builtin": text.builtin, "text-file": text.text_file, "jsonl": text.jsonl}
    ids, texts = loaders[spec["source"]](spec)
    min_chars = spec.get("min_chars", 1)
    pairs = [(i, t) for i, t in zip(ids, texts) if len(t) >= min_chars]
    if not pairs:
        raise DatasetError(f"dataset {name!r}: no sample has at least {min_chars} characters")
    ids, texts = map(list, zip(*pairs))
    return select(ids, texts, spec.get("n_samples"), spec.get("seed", 0), name)
