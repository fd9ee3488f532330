"""Datasets: each source yields ``Samples`` (ids + payloads) deterministically from its config entry.

A dataset has a ``modality``: ``text`` (captions/paragraphs only), ``vision`` (images only) or ``paired``
(every sample has an image *and* a caption under one ``sample_id``). A paired dataset serves both kinds of
model: text models read its captions, vision models its images, and both see the same sample ids in the same
order, so the alignment stage can compare a language model with a vision model sample by sample.

Sources: ``builtin`` (``python-docs`` text; ``digits`` images + synthetic captions; ``truth`` true/false
statements), ``text-file``, ``jsonl`` (text, image path, or both) and ``image-folder``. Everything is read from local files or from data that ships
with Python or a dependency; nothing is downloaded.

Labels live with the samples (:mod:`.labels`): ``Samples.labels`` (int64 class index or float64 regression
target per sample), ``label_names``, ``label_type`` and ``groups`` (extra per-sample string columns such as the
``template`` of the builtin ``truth`` set), drawn with the samples and part of the fingerprint.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field, replace
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

    Labels (``None`` for an unlabelled dataset): ``labels[i]`` is sample ``i``'s class index into ``label_names``
    (int64, ``label_type == "class"``) or its target (float64, ``"regression"``, ``label_names`` empty);
    ``groups`` maps a column name to one string per sample (e.g. ``{"template": [...]}``). :meth:`take` keeps
    them aligned with the samples.

    Views (:mod:`.views`; ``None`` otherwise): ``view_of[i]`` is the id of the base sample that sample ``i`` is a
    perturbation of, ``view[i]`` its view number.
    """

    ids: list[str]
    texts: list[str] | None = None
    images: list[ImageRef] | None = None
    image_digests: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    label_type: str | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)
    view_of: list[str] | None = None
    view: list[int] | None = None

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
        Labels, when present, add ``label_type``, ``label_names``, the label of every sample and the ``groups``
        columns (sorted by name); an unlabelled dataset's fingerprint is unchanged from before labels existed.
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
        if self.labels is not None:
            h.update(b"\4" + str(self.label_type).encode() + b"\0")
            for label_name in self.label_names:
                h.update(label_name.encode() + b"\0")
            dtype = "<i8" if self.label_type == "class" else "<f8"
            h.update(b"\5" + np.ascontiguousarray(self.labels, dtype=dtype).tobytes())
            for column in sorted(self.groups):
                h.update(b"\6" + column.encode() + b"\0")
                for value in self.groups[column]:
                    h.update(value.encode() + b"\0")
        if self.view_of is not None:  # absent for ordinary datasets: their fingerprints are unchanged
            h.update(b"\7")
            for base, view in zip(self.view_of, self.view):
                h.update(f"{base}\0{view}\0".encode())
        return h.hexdigest()

    def take(self, rows) -> Samples:
        rows = list(rows)
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]  # noqa: E731
        return Samples([self.ids[i] for i in rows], pick(self.texts), pick(self.images), pick(self.image_digests),
                       list(self.skipped), None if self.labels is None else self.labels[np.asarray(rows, dtype=np.intp)],
                       list(self.label_names), self.label_type,
                       {k: [v[i] for i in rows] for k, v in self.groups.items()}, pick(self.view_of), pick(self.view))

    def without_absent_classes(self) -> Samples:
        """The same samples with ``label_names`` reduced to the classes that occur, indices renumbered (order kept)."""
        if self.labels is None or self.label_type != "class":
            return self
        present = np.unique(self.labels)
        if len(present) == len(self.label_names):
            return self
        remap = np.full(len(self.label_names), -1, dtype=np.int64)
        remap[present] = np.arange(len(present))
        return replace(self, labels=remap[self.labels], label_names=[self.label_names[i] for i in present])


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
    return select_samples(Samples(list(ids), texts, images, image_digests), n_samples, seed, name)


def select_samples(full: Samples, n_samples: int | None, seed: int, name: str) -> Samples:
    """:func:`select` on a :class:`Samples` (labels and groups are drawn with their samples).

    Of identical inputs the first is kept, whatever the labels of the others.
    """
    n = len(full)
    keys = list(zip(full.texts if full.texts is not None else [None] * n,
                    full.image_digests if full.image_digests is not None else [None] * n))
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

    A views dataset (:mod:`.views`) has the key ``derive_views`` (``{"of": base name, **views}``): the base
    dataset is loaded from the rest of ``spec`` and its views derived.
    """
    from . import images, text, truth

    if spec.get("derive_views") is not None:
        from . import views

        derive = dict(spec["derive_views"])
        base_spec = {k: v for k, v in spec.items() if k != "derive_views"}
        base = load_samples(derive.pop("of"), base_spec)
        return views.derive(name, base, derive, views.augments_for(dict(base_spec, views=derive)))
    from .labels import check_label_count, encode_labels, raw_labels

    modality = spec.get("modality", "text")
    if modality not in MODALITIES:
        raise DatasetError(f"dataset {name!r}: unknown modality {modality!r} (one of {', '.join(MODALITIES)})")
    source = spec["source"]
    if source == "builtin":
        builtin = spec.get("name", "python-docs")
        loader = {"python-docs": text.builtin, "digits": images.digits, "truth": truth.truth}.get(builtin)
        if loader is None:
            raise DatasetError(f"dataset {name!r}: unknown builtin {builtin!r} (python-docs, digits, truth)")
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
    values, groups = raw_labels(name, spec, ids)
    labels, label_names, label_type = encode_labels(name, spec, values) if values is not None else (None, [], None)
    full = Samples(ids, texts, imgs, digests, [], labels, label_names, label_type, groups)

    wants_text, wants_images = modality in ("text", "paired"), modality in ("vision", "paired")
    if wants_text and texts is None:
        raise DatasetError(f"dataset {name!r}: source {source!r} has no texts, so it cannot be modality {modality!r}"
                           " (use modality: vision)")
    if wants_images and imgs is None:
        raise DatasetError(f"dataset {name!r}: source {source!r} has no images, so it cannot be modality "
                           f"{modality!r} (use modality: text, or an image source: image-folder, jsonl with "
                           "image_field, builtin digits)")
    full = replace(full, texts=texts if wants_text else None, images=imgs if wants_images else None,
                   image_digests=digests if wants_images else None)

    if full.texts is not None:
        min_chars = spec.get("min_chars", 1)
        keep = [i for i, t in enumerate(full.texts) if len(t) >= min_chars]
        if not keep:
            raise DatasetError(f"dataset {name!r}: no sample has at least {min_chars} characters")
        if len(keep) < len(full):
            full = full.take(keep)
    skipped: list[str] = []
    if full.images is not None and spec.get("skip_unreadable", False):
        from .images import unreadable_images

        bad = unreadable_images(full.images)
        if bad:
            skipped = [full.ids[i] for i in bad]
            _report_skipped(name, skipped, list(bad.values()), len(full))
            drop = set(bad)
            full = full.take(i for i in range(len(full)) if i not in drop)
    if not len(full):
        raise DatasetError(f"dataset {name!r}: no samples" + (" (every image is unreadable)" if skipped else ""))
    samples = select_samples(full, spec.get("n_samples"), spec.get("seed", 0), name).without_absent_classes()
    if samples.labels is not None:
        check_label_count(name, spec, samples.labels, samples.label_names, samples.label_type,
                          " among the selected samples (n_samples, seed, min_chars, duplicates)")
    return replace(samples, skipped=skipped)


def _report_skipped(name: str, skipped: list[str], reasons: list[str], total: int, show: int = 20) -> None:
    """Print the skipped samples to the job log (stdout)."""
    print(f"dataset {name!r}: skip_unreadable: skipped {len(skipped)} of {total} samples whose image is unreadable "
          "(dropped before the seeded selection; recorded in the store attribute skipped_samples):", flush=True)
    for sid, why in list(zip(skipped, reasons))[:show]:
        print(f"  skipped {sid}: {why}", flush=True)
    if len(skipped) > show:
        print(f"  ... and {len(skipped) - show} more", flush=True)


#: Distinct samples of the builtin sets per modality (checked against :func:`load_samples` in the tests).
BUILTIN_SIZES = {"python-docs": {"text": 1625}, "digits": {"text": 89, "vision": 1797, "paired": 1797},
                 "truth": {"text": 3416}}


def label_counts(samples: Samples) -> dict[str, int]:
    """``{class name: number of samples}`` in class-index order (classes without samples count 0).

    Only for class labels: an unlabelled or regression dataset is a ``ValueError``.
    """
    if samples.labels is None or samples.label_type != "class":
        raise ValueError(f"label_counts needs class labels, but the samples have label_type {samples.label_type!r}")
    counts = np.bincount(samples.labels, minlength=len(samples.label_names))
    return {name: int(c) for name, c in zip(samples.label_names, counts)}


def check_dataset(name: str, spec: dict) -> int:
    """Cheap checks of dataset ``name`` before any job runs; returns its number of usable samples.

    The file or folder must exist, the text must decode in ``encoding``, and ``n_samples`` must not exceed the
    usable samples, counted with the filters :func:`load_samples` applies (``min_chars``, dropping exact duplicate
    texts) — without decoding images or reading their bytes, so for image data the count is the number of image
    files or records, an upper bound (duplicate images and, with ``skip_unreadable``, unreadable ones are only
    found when the extraction job loads the data). Raises :class:`DatasetError` whose ``key`` is the config key
    at fault (``datasets.NAME.path``, ``datasets.NAME.n_samples``, ...).

    Labels (:mod:`.labels`) are read for every record, before any filter: the label keys must fit the source,
    every sample needs a label (else the file and line are named), regression targets must be numbers, and the
    data must hold at least 2 classes (2 distinct targets).
    """
    from . import images, text, truth
    from .labels import check_label_count, encode_labels, label_source, raw_labels

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
    ids = None
    try:
        label_source(spec)
        if source == "builtin":
            builtin = spec.get("name", "python-docs")
            count = BUILTIN_SIZES.get(builtin, {}).get(modality)
            if count is None:
                fail(f"unknown builtin {builtin!r} or modality {modality!r}", "name")
            if builtin == "python-docs" and min_chars > 1:  # the known size holds texts of >= 40 characters
                count = len({t for t in text.builtin(spec)[1] if len(t) >= min_chars})
            what = f"builtin {builtin!r} has {count} distinct samples"
            if builtin == "digits":
                ids = [f"digits:{i}" for i in range(BUILTIN_SIZES["digits"]["vision"])]
            elif builtin == "truth":
                ids = truth.truth(spec)[0]
        elif source == "image-folder":
            ids = images.image_folder(spec, digests=False)[0]
            count = len(ids)
            what = f"the folder has {count} image files"
        elif source == "jsonl" and modality != "text":
            ids, captions, _, _ = images.jsonl(spec, modality, digests=False)
            if captions is None:
                count, what = len(ids), f"the file has {len(ids)} records"
            else:
                count = sum(len(c) >= min_chars for c in captions)
                what = f"the file has {count} records with a caption (after min_chars={min_chars})"
        else:
            ids, texts = text.text_file(spec) if source == "text-file" else text.jsonl(spec)
            count = len({t for t in texts if len(t) >= min_chars})
            what = f"the file has {count} usable samples (after min_chars={min_chars} and dropping duplicates)"
        if spec.get("views") is not None:
            from .views import check_views

            check_views(spec)
        values = raw_labels(name, spec, ids)[0] if ids is not None else None
        if values is not None:
            labels, label_names, label_type = encode_labels(name, spec, values)
            check_label_count(name, spec, labels, label_names, label_type)
    except DatasetError as exc:
        if exc.key is not None and exc.key.startswith("datasets."):
            raise
        fail(str(exc), exc.key)
    n_samples = spec.get("n_samples")
    if n_samples is not None and n_samples > count:
        fail(f"{n_samples} requested but {what}", "n_samples")
    view_samples = (spec.get("views") or {}).get("n_samples")
    if view_samples is not None and view_samples > min(count, n_samples or count):
        fail(f"{view_samples} base samples requested for views but {what}"
             + (f" and n_samples is {n_samples}" if n_samples else ""), "views.n_samples")
    return count


def _unpack(raw):
    if len(raw) == 2:  # text loaders: (ids, texts)
        return raw[0], raw[1], None, None
    return raw
