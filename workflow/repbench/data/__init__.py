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

import codecs
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
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

    ``skipped`` lists the ids of samples dropped as unreadable images (``skip_unreadable: true``) before the
    seeded selection — all of them, not only those the selection would have drawn; they enter the fingerprint.
    """

    ids: list[str]
    texts: list[str] | None = None
    images: list[ImageRef] | None = None
    image_digests: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

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
        if self.skipped:  # absent when nothing was skipped: fingerprints of complete data are unchanged
            h.update(b"\3")
            for sid in self.skipped:
                h.update(sid.encode())
                h.update(b"\0")
        return h.hexdigest()

    def take(self, rows) -> Samples:
        rows = list(rows)
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]  # noqa: E731
        return Samples([self.ids[i] for i in rows], pick(self.texts), pick(self.images), pick(self.image_digests),
                       list(self.skipped))


class DatasetError(ValueError):
    """A dataset cannot deliver what its config entry asks for.

    ``key`` names the config key at fault when known: relative (``"path"``) from the loaders, absolute
    (``"datasets.NAME.path"``) from :func:`check_dataset`.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def text_lines(path, encoding: str = "utf-8"):
    """``(line number, line)`` for every line of a text file decoded with ``encoding``.

    Bytes that are not valid in ``encoding`` raise :class:`DatasetError` naming the file and the line and pointing
    at the dataset key ``encoding`` (instead of a bare ``UnicodeDecodeError``).
    """
    n = 0
    with open(path, encoding=encoding) as f:
        try:
            for n, line in enumerate(f, start=1):
                yield n, line
        except UnicodeDecodeError as exc:
            bad = _undecodable_line(path, encoding) or n + 1
            raise DatasetError(
                f"{path}:{bad}: not valid {encoding} text ({exc.reason}, byte "
                f"{exc.object[exc.start:exc.start + 1]!r}); "
                f"set the dataset key `encoding` to the file's encoding (e.g. `encoding: latin-1`)",
                key="encoding",
            ) from None


def _undecodable_line(path, encoding: str) -> int | None:
    """1-based number of the first line (split at b"\\n") that ``encoding`` cannot decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    n = 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError:
                return n
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return max(n, 1)
    return None


def jsonl_records(path, encoding: str = "utf-8"):
    """``(line number, object)`` for every non-empty line of a JSON-lines file; bad JSON or bytes that are not
    valid in ``encoding`` name file and line."""
    import json

    for n, line in text_lines(path, encoding):
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
    skipped: list[str] = []
    if imgs is not None and spec.get("skip_unreadable", False):
        from .images import unreadable_images

        bad = unreadable_images(imgs)
        if bad:
            skipped = [ids[i] for i in bad]
            _report_skipped(name, skipped, list(bad.values()), len(ids))
            drop = set(bad)
            sub = Samples(ids, texts, imgs, digests).take(i for i in range(len(ids)) if i not in drop)
            ids, texts, imgs, digests = sub.ids, sub.texts, sub.images, sub.image_digests
    if not ids:
        raise DatasetError(f"dataset {name!r}: no samples" + (" (every image is unreadable)" if skipped else ""))
    samples = select(ids, texts, spec.get("n_samples"), spec.get("seed", 0), name, images=imgs,
                     image_digests=digests)
    return Samples(samples.ids, samples.texts, samples.images, samples.image_digests, skipped)


def _report_skipped(name: str, skipped: list[str], reasons: list[str], total: int, show: int = 20) -> None:
    """Print the skipped samples to the job log (stdout)."""
    print(f"dataset {name!r}: skip_unreadable: skipped {len(skipped)} of {total} samples whose image is unreadable "
          "(dropped before the seeded selection; recorded in the store attribute skipped_samples):", flush=True)
    for sid, why in list(zip(skipped, reasons))[:show]:
        print(f"  skipped {sid}: {why}", flush=True)
    if len(skipped) > show:
        print(f"  ... and {len(skipped) - show} more", flush=True)


#: Distinct samples of the builtin sets per modality (checked against :func:`load_samples` in the tests).
BUILTIN_SIZES = {"python-docs": {"text": 1625}, "digits": {"text": 89, "vision": 1797, "paired": 1797}}


def check_dataset(name: str, spec: dict) -> int:
    """Cheap checks of dataset ``name`` before any job runs; returns its number of usable samples.

    The file or folder must exist, the text must decode in ``encoding``, and ``n_samples`` must not exceed the
    usable samples, counted with the filters :func:`load_samples` applies (``min_chars``, dropping exact duplicate
    texts) — without decoding images or reading their bytes, so for image data the count is the number of image
    files or records, an upper bound (duplicate images and, with ``skip_unreadable``, unreadable ones are only
    found when the extraction job loads the data). Raises :class:`DatasetError` whose ``key`` is the config key
    at fault (``datasets.NAME.path``, ``datasets.NAME.n_samples``, ...).
    """
    from . import images, text

    def fail(message: str, key: str | None = None):
        raise DatasetError(message, key=f"datasets.{name}" + (f".{key}" if key else ""))

    source, modality = spec["source"], spec.get("modality", "text")
    min_chars, encoding = spec.get("min_chars", 1), spec.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        fail(f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)", "encoding")
    if source in ("text-file", "jsonl", "image-folder"):
        path = Path(spec["path"])
        if not path.exists():
            fail(f"{path} does not exist", "path")
        if source == "image-folder" and not path.is_dir():
            fail(f"{path} is not a folder (source image-folder reads every image file under a folder)", "path")
        if source != "image-folder" and not path.is_file():
            fail(f"{path} is not a file (source {source} reads one file)", "path")
    if spec.get("image_root") and source == "jsonl" and modality != "text" and not Path(spec["image_root"]).is_dir():
        fail(f"{spec['image_root']} is not a folder", "image_root")
    if modality != "text" and (source == "text-file" or (source == "builtin" and spec.get("name") != "digits")):
        fail(f"source {source!r} has no images, so it cannot be modality {modality!r} (use modality: text)", "modality")
    try:
        if source == "builtin":
            builtin = spec.get("name", "python-docs")
            count = BUILTIN_SIZES.get(builtin, {}).get(modality)
            if count is None:
                fail(f"unknown builtin {builtin!r} or modality {modality!r}", "name")
            if builtin == "python-docs" and min_chars > 1:  # the known size holds texts of >= 40 characters
                count = len({t for t in text.builtin(spec)[1] if len(t) >= min_chars})
            what = f"builtin {builtin!r} has {count} distinct samples"
        elif source == "image-folder":
            count = len(images.image_folder(spec, digests=False)[0])
            what = f"the folder has {count} image files"
        elif source == "jsonl" and modality != "text":
            ids, captions, _, _ = images.jsonl(spec, modality, digests=False)
            if captions is None:
                count, what = len(ids), f"the file has {len(ids)} records"
            else:
                count = sum(len(c) >= min_chars for c in captions)
                what = f"the file has {count} records with a caption (after min_chars={min_chars})"
        else:
            texts = (text.text_file(spec) if source == "text-file" else text.jsonl(spec))[1]
            count = len({t for t in texts if len(t) >= min_chars})
            what = f"the file has {count} usable samples (after min_chars={min_chars} and dropping duplicates)"
    except DatasetError as exc:
        if exc.key is not None and exc.key.startswith("datasets."):
            raise
        fail(str(exc), exc.key)
    n_samples = spec.get("n_samples")
    if n_samples is not None and n_samples > count:
        fail(f"{n_samples} requested but {what}", "n_samples")
    return count


def _unpack(raw):
    if len(raw) == 2:  # text loaders: (ids, texts)
        return raw[0], raw[1], None, None
    return raw
