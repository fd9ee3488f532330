"""Image sources: a folder of images, JSON lines with image paths (optionally paired with captions) and the
builtin ``digits`` set (scikit-learn's bundled handwritten digits with synthetic captions; no download).

Every loader returns ``(ids, texts | None, images, image_digests)``; images are file paths (opened lazily, in the
extraction's background thread) or ``(H, W, 3)`` uint8 arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import DatasetError, digest_bytes, jsonl_records

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def load_image(ref):
    """A ``PIL.Image`` in RGB for a path or an ``(H, W, 3)`` uint8 array."""
    from PIL import Image

    if isinstance(ref, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(ref, dtype=np.uint8)).convert("RGB")
    try:
        with Image.open(ref) as im:
            return im.convert("RGB")
    except UNREADABLE as exc:
        raise DatasetError(
            f"image {str(ref)!r} is unreadable ({_reason(exc)}); replace or remove it, or set `skip_unreadable: true` "
            "on its dataset to drop unreadable images before sampling"
        ) from None


def _unreadable_exceptions():
    import struct

    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


UNREADABLE = _unreadable_exceptions()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def image_problem(ref) -> str | None:
    """Why image ``ref`` cannot be opened and fully decoded by PIL (``None`` when it can). A truncated file is
    unreadable."""
    from PIL import Image

    if isinstance(ref, np.ndarray):
        return None
    try:
        with Image.open(ref) as im:
            im.load()
    except UNREADABLE as exc:
        return _reason(exc)
    return None


def unreadable_images(refs: list, workers: int | None = None) -> dict[int, str]:
    """``{index: reason}`` of the images PIL cannot decode, in index order (decodes every image, in threads)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(image_problem, refs, chunksize=16))
    return {i: why for i, why in enumerate(problems) if why is not None}


def _file_digest(path: Path) -> str:
    try:
        return digest_bytes(path.read_bytes())
    except OSError as exc:
        raise DatasetError(f"cannot read image {str(path)!r}: {exc}") from None


def image_folder(spec: dict, digests: bool = True):
    """Every image file under ``path`` (recursively, sorted); ids are the paths relative to it (``a/b.png``).

    ``digests=False`` skips reading the files (digests ``None``): the cheap listing of :func:`check_dataset`.
    """
    root = Path(spec["path"])
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist (datasets.*.path)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"image folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    ids = [p.relative_to(root).as_posix() for p in files]
    return ids, None, [str(p) for p in files], ([_file_digest(p) for p in files] if digests else None)


def jsonl(spec: dict, modality: str, digests: bool = True):
    """JSON lines with an image path (``image_field``) and, for paired data, a caption (``text_field``).

    Relative image paths are resolved against ``image_root`` (default: the jsonl file's folder). Ids come from
    ``id_field`` (default: ``line:N``). For example (paired, WIT-style)::

        {"sample_id": "wit-000001", "image": "images/000001.jpg", "caption": "A lighthouse on a cliff"}

    ``digests=False`` skips reading the image files (digests ``None``): the cheap pass of :func:`check_dataset`.
    """
    path = Path(spec["path"])
    if not path.is_file():
        raise DatasetError(f"dataset file {str(path)!r} does not exist (datasets.*.path)")
    root = Path(spec.get("image_root") or path.parent)
    text_field, image_field, id_field = spec.get("text_field", "text"), spec.get("image_field", "image"), spec.get("id_field")
    ids, texts, images, hashes = [], [], [], []
    for n, record in jsonl_records(path, spec.get("encoding", "utf-8")):
        if image_field not in record:
            raise DatasetError(f"{path}:{n}: missing image field {image_field!r}")
        if modality == "paired" and text_field not in record:
            raise DatasetError(f"{path}:{n}: missing text field {text_field!r} (paired data needs a caption)")
        if id_field and id_field not in record:
            raise DatasetError(f"{path}:{n}: missing id field {id_field!r}")
        image = Path(str(record[image_field]))
        image = image if image.is_absolute() else root / image
        if not image.is_file():
            raise DatasetError(f"{path}:{n}: image {str(image)!r} does not exist")
        ids.append(str(record[id_field]) if id_field else f"line:{n}")
        texts.append(" ".join(str(record.get(text_field, "")).split()))
        images.append(str(image))
        if digests:
            hashes.append(_file_digest(image))
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: sample ids in {id_field!r} are not unique")
    return ids, (texts if modality == "paired" else None), images, (hashes if digests else None)


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digits(spec: dict):
    """``digits``: scikit-learn's 1 797 handwritten digits (8×8 grey, 0–16), as RGB uint8 images, with captions.

    Tiny and synthetic, for smoke tests and examples, not for science: images are 8×8 (upsampled by each model's
    image processor), and captions are generated from the label and two image statistics —
    ``"a bold, right-leaning handwritten digit seven"`` — stroke weight (ink tertile) and lean (tertile of the
    horizontal ink centroid), so there are at most 90 distinct captions. Ids are ``digits:N`` (row of
    ``sklearn.datasets.load_digits``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DatasetError(f"builtin 'digits' needs scikit-learn ({exc})") from None
    bunch = load_digits()
    grey = bunch.images  # (n, 8, 8) in 0..16
    labels = bunch.target
    ink = grey.sum(axis=(1, 2))
    cols = np.arange(grey.shape[2])
    centroid = (grey.sum(axis=1) * cols).sum(axis=1) / np.maximum(ink, 1e-9)
    weight = np.digitize(ink, np.quantile(ink, [1 / 3, 2 / 3]))
    lean = np.digitize(centroid, np.quantile(centroid, [1 / 3, 2 / 3]))
    weights, leans = ("thin", "regular", "bold"), ("left-leaning", "upright", "right-leaning")
    rgb = np.repeat(np.round(grey * (255 / 16)).astype(np.uint8)[..., None], 3, axis=-1)
    ids = [f"digits:{i}" for i in range(len(labels))]
    texts = [f"a {weights[w]}, {leans[s]} handwritten digit {DIGIT_WORDS[y]}" for w, s, y in zip(weight, lean, labels)]
    images = [np.ascontiguousarray(im) for im in rgb]
    return ids, texts, images, [digest_bytes(im.tobytes()) for im in images]
