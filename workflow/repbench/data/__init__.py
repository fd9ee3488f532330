"""Datasets: each source yields ``Samples`` (ids + payloads) deterministically from its config entry.

A dataset has a ``modality``: ``text`` (captions/paragraphs only), ``vision`` (images only) or ``paired``
(every sample has an image *and* a caption under one ``sample_id``). A paired dataset serves both kinds of
model: text models read its captions, vision models its images, and both see the same sample ids in the same
order, so the alignment stage can compare a language model with a vision model sample by sample.

Sources: ``builtin`` (``python-docs`` text; ``digits`` images + synthetic captions), ``text-file``, ``jsonl``
(text, image path, or both) and ``image-folder``. Everything is read from local files or from data that ships
with Python or a dependency; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Union

import numpy as np

MODALITIES = ("text", "vision", "paired")

#: An image is a file path (read lazily) or an ``(H, W, 3)`` uint8 array.
ImageRef = Union[str, np.ndarray]


@dataclass(frozen=True)
class Samples:
    """A dataset's selected samples, in store order: ``ids[i]`` names ``texts[i]`` and/or ``images[i]``.

    ``image_digests[i]`` is the sha256 of image ``i``'s bytes (file bytes, or array bytes for builtin images);
    it stands for the image in the fingerprint and in duplicate detection.
    """

    ids: list[str]
    texts: list[str] | None = None
    images: list[ImageRef] | None = None
    image_digests: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def modality(self) -> str:
        if self.texts is not None and self.images is not None:
            return "paired"
        return "vision" if self.images is not None else "text"

    def fingerprint(self) -> str:
        """sha256 over ids and payloads: two stores with equal fingerprints saw identical inputs.

        For text-only data this is the hash of ids and texts alone (unchanged from text-only repbench); images
        add their digests. A paired dataset has one fingerprint, whichever modality a model reads from it.
        """
        h = hashlib.sha256()
        texts = self.texts if self.texts is not None else [None] * len(self.ids)
        digests = self.image_digests if self.image_digests is not None else [None] * len(self.ids)
        for sid, text, digest in zip(self.ids, texts, digests):
            h.update(sid.encode())
            h.update(b"\0")
            if text is not None:
                h.update(text.encode())
            if digest is not None:
                h.update(b"\2")
                h.update(digest.encode())
            h.update(b"\1")
        return h.hexdigest()

    def take(self, rows) -> Samples:
        rows = list(rows)
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]  # noqa: E731
        return Samples([self.ids[i] for i in rows], pick(self.texts), pick(self.images), pick(self.image_digests))


class DatasetError(ValueError):
    """A dataset cannot deliver what its config entry asks for."""


def jsonl_records(path):
    """``(line number, object)`` for every non-empty line of a JSON-lines file; bad JSON names file and line."""
    import json

    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def select(ids: list[str], texts: list[str] | None, n_samples: int | None, seed: int, name: str,
           *, images: list[ImageRef] | None = None, image_digests: list[str] | None = None) -> Samples:
    """Seeded selection of ``n_samples`` without replacement, kept in source order (stable ids).

    Exact duplicate inputs are dropped first (keeping the first): duplicate texts for text data, duplicate
    images for image data, duplicate (image, caption) pairs for paired data — so no two samples are identical
    inputs, and a paired dataset keeps one sample list for both modalities.
    """
    full = Samples(list(ids), texts, images, image_digests)
    keys = list(zip(texts if texts is not None else [None] * len(ids),
                    image_digests if image_digests is not None else [None] * len(ids)))
    seen: set = set()
    keep = [i for i, k in enumerate(keys) if not (k in seen or seen.add(k))]
    full = full.take(keep)
    if n_samples is None:
        return full
    if n_samples > len(full):
        raise DatasetError(
            f"dataset {name!r}: n_samples={n_samples} but only {len(full)} distinct usable samples exist; "
            "lower datasets.{name}.n_samples or supply more data".replace("{name}", name)
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(full), size=n_samples, replace=False))
    return full.take(chosen.tolist())


def load_samples(name: str, spec: dict) -> Samples:
    """Load dataset ``name`` from its (validated) config entry ``spec``.

    ``spec["modality"]`` decides which payloads are required: texts (``text``), images (``vision``) or both
    (``paired``).
    """
    from . import images, text

    modality = spec.get("modality", "text")
    if modality not in MODALITIES:
        raise DatasetError(f"dataset {name!r}: unknown modality {modality!r} (one of {', '.join(MODALITIES)})")
    source = spec["source"]
    if source == "builtin":
        builtin = spec.get("name", "python-docs")
        loader = {"python-docs": text.builtin, "digits": images.digits}.get(builtin)
        if loader is None:
            raise DatasetError(f"dataset {name!r}: unknown builtin {builtin!r} (python-docs, digits)")
        raw = loader(spec)
    elif source == "text-file":
        raw = text.text_file(spec)
    elif source == "jsonl":
        raw = images.jsonl(spec, modality) if modality != "text" else text.jsonl(spec)
    elif source == "image-folder":
        raw = images.image_folder(spec)
    else:
        raise DatasetError(f"dataset {name!r}: unknown source {source!r}")
    ids, texts, imgs, digests = _unpack(raw)

    wants_text, wants_images = modality in ("text", "paired"), modality in ("vision", "paired")
    if wants_text and texts is None:
        raise DatasetError(f"dataset {name!r}: source {source!r} has no texts, so it cannot be modality {modality!r}"
                           " (use modality: vision)")
    if wants_images and imgs is None:
        raise DatasetError(f"dataset {name!r}: source {source!r} has no images, so it cannot be modality "
                           f"{modality!r} (use modality: text, or an image source: image-folder, jsonl with "
                           "image_field, builtin digits)")
    if not wants_text:
        texts = None
    if not wants_images:
        imgs = digests = None

    if texts is not None:
        min_chars = spec.get("min_chars", 1)
        keep = [i for i, t in enumerate(texts) if len(t) >= min_chars]
        if not keep:
            raise DatasetError(f"dataset {name!r}: no sample has at least {min_chars} characters")
        if len(keep) < len(ids):
            sub = Samples(ids, texts, imgs, digests).take(keep)
            ids, texts, imgs, digests = sub.ids, sub.texts, sub.images, sub.image_digests
    if not ids:
        raise DatasetError(f"dataset {name!r}: no samples")
    return select(ids, texts, spec.get("n_samples"), spec.get("seed", 0), name, images=imgs, image_digests=digests)


def _unpack(raw):
    if len(raw) == 2:  # text loaders: (ids, texts)
        return raw[0], raw[1], None, None
    return raw
