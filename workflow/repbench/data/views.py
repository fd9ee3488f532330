"""Augmented views: ``K`` deterministic, meaning-preserving perturbations of every sample of a dataset.

A dataset entry with ``views: {n: K, ...}`` derives the dataset ``NAME.views``: for each selected base sample
``s`` (all of them, or a seeded subset of ``views.n_samples``) the samples ``s|view0 … s|view{K-1}``, in that order,
with the column ``view_of`` (the base sample id) and ``view`` (0 … K−1). It is a dataset of its own: extraction,
stores and resume work on it unchanged, the base dataset's stores and jobs are untouched, and the invariance
family joins the views of one sample by ``view_of``.

Every view is drawn from its own generator, seeded by ``(views.seed, sha256(base id), view)``: a view does not
depend on which other samples were selected, and the same seed gives byte-identical texts and images.

Text perturbations (nlpaug-style, written here; ``rate`` is the fraction of eligible words, at most
``max_edits`` of them, and of characters within a chosen word):

* ``split`` — split a word of ≥ 4 characters in two at a random inner position (nlpaug ``SplitAug``);
* ``char_substitute`` — replace characters of a word by random letters or digits (nlpaug ``RandomCharAug``);
* ``keyboard`` — replace characters by a neighbouring key of a QWERTY keyboard (nlpaug ``KeyboardAug``);
* ``char_swap`` — swap a character with its right neighbour; ``char_delete`` — delete characters;
* ``word_swap`` — swap a word with its right neighbour (word-order noise);
* ``punctuation`` — insert a punctuation mark after a word (AEDA-style noise).

The information-flow authors chain ``split``, ``char_substitute`` and ``keyboard`` (the text default). Characters
are eligible only inside words of ≥ 4 characters, as nlpaug's ``min_char=4``.

Image perturbations (torchvision-style, on PIL images of the original size):

* ``crop`` — random resized crop: area fraction uniform in ``crop_scale``, aspect ratio log-uniform in
  [3/4, 4/3] (10 tries, then the central crop), resized back bilinearly;
* ``flip`` — horizontal flip with probability 1/2;
* ``color_jitter`` — brightness, contrast and saturation factors uniform in [1 − s, 1 + s], s = ``jitter``, in a
  random order (torchvision's ``ColorJitter`` without hue).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace

import numpy as np

from . import DatasetError, Samples, digest_bytes

TEXT_AUGMENTS = ("split", "char_substitute", "keyboard", "char_swap", "char_delete", "word_swap", "punctuation")
IMAGE_AUGMENTS = ("crop", "flip", "color_jitter")
DEFAULT_AUGMENTS = {"text": ["split", "char_substitute", "keyboard"], "vision": ["crop", "flip", "color_jitter"]}
DEFAULT_AUGMENTS["paired"] = DEFAULT_AUGMENTS["text"] + DEFAULT_AUGMENTS["vision"]
SUFFIX = ".views"  # the derived dataset of NAME is NAME.views
MIN_CHAR = 4
PUNCTUATION = ".;?:!,"
_QWERTY = ["1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm"]
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def derived_name(base: str) -> str:
    return base + SUFFIX


def augments_for(spec: dict) -> list[str]:
    """The perturbations a dataset's ``views`` apply: ``views.augment``, else the default of its modality."""
    views = spec["views"]
    return list(views.get("augment") or DEFAULT_AUGMENTS[spec.get("modality", "text")])


def check_views(spec: dict) -> None:
    """Config checks of ``views`` the schema cannot make; a :class:`DatasetError` whose key is relative to the
    dataset (``views.augment.2``)."""
    modality = spec.get("modality", "text")
    allowed = (TEXT_AUGMENTS if modality in ("text", "paired") else ()) + \
              (IMAGE_AUGMENTS if modality in ("vision", "paired") else ())
    for i, name in enumerate(augments_for(spec)):
        if name not in allowed:
            kind = "an image" if name in IMAGE_AUGMENTS else "a text" if name in TEXT_AUGMENTS else "an unknown"
            raise DatasetError(f"{name!r} is {kind} augmentation, not defined for a {modality} dataset "
                               f"(for {modality}: {', '.join(allowed)})", key=f"views.augment.{i}")
    scale = spec["views"].get("crop_scale", [0.25, 1.0])
    if not 0 < scale[0] <= scale[1] <= 1:
        raise DatasetError(f"crop_scale {scale} must satisfy 0 < low <= high <= 1", key="views.crop_scale")


def view_rng(seed: int, sample_id: str, view: int) -> np.random.Generator:
    """The generator of one view: independent of the other samples and views."""
    digest = int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, view])


# ---------------------------------------------------------------- text


def _keyboard_neighbours() -> dict[str, str]:
    """Each key's neighbours on a QWERTY keyboard (same row ±1, rows above and below at offsets 0, ±1)."""
    out = {}
    for r, row in enumerate(_QWERTY):
        for c, ch in enumerate(row):
            near = []
            for dr in (-1, 0, 1):
                if 0 <= r + dr < len(_QWERTY):
                    other = _QWERTY[r + dr]
                    for dc in (-1, 0, 1):
                        if (dr, dc) != (0, 0) and 0 <= c + dc < len(other):
                            near.append(other[c + dc])
            out[ch] = "".join(near)
    return out


_KEYBOARD = _keyboard_neighbours()


def _chosen(rng, candidates: list[int], rate: float, max_edits: int) -> list[int]:
    """A seeded choice of ``ceil(rate · n)`` (≤ ``max_edits``, ≥ 1 when any) of ``candidates``, sorted."""
    if not candidates:
        return []
    n = min(max_edits, max(1, int(np.ceil(rate * len(candidates)))))
    return sorted(rng.choice(candidates, size=n, replace=False).tolist())


def _edit_chars(word: str, rng, rate: float, edit) -> str:
    """``edit(ch, rng)`` (a string, possibly empty) applied to ``ceil(rate · len)`` seeded positions of ``word``."""
    chars = list(word)
    for i in _chosen(rng, list(range(len(chars))), rate, len(chars)):
        chars[i] = edit(chars[i], rng)
    return "".join(chars)


def _keyboard(ch: str, rng) -> str:
    near = _KEYBOARD.get(ch.lower())
    if not near:
        return ch
    out = near[rng.integers(len(near))]
    return out.upper() if ch.isupper() else out


def augment_text(text: str, augments: list[str], rng, rate: float = 0.3, max_edits: int = 10) -> str:
    """``text`` with the perturbations ``augments`` applied in order (see the module doc)."""
    for name in augments:
        words = text.split()
        long_words = [i for i, w in enumerate(words) if len(w) >= MIN_CHAR]
        if name == "split":
            for i in reversed(_chosen(rng, long_words, rate, max_edits)):
                w = words[i]
                cut = int(rng.integers(1, len(w)))
                words[i:i + 1] = [w[:cut], w[cut:]]
        elif name in ("char_substitute", "keyboard", "char_delete"):
            edit = {"char_substitute": lambda ch, r: _ALNUM[r.integers(len(_ALNUM))],
                    "keyboard": _keyboard, "char_delete": lambda ch, r: ""}[name]
            for i in _chosen(rng, long_words, rate, max_edits):
                words[i] = _edit_chars(words[i], rng, rate, edit)
        elif name == "char_swap":
            for i in _chosen(rng, long_words, rate, max_edits):
                chars = list(words[i])
                for j in _chosen(rng, list(range(len(chars) - 1)), rate, len(chars)):
                    chars[j], chars[j + 1] = chars[j + 1], chars[j]
                words[i] = "".join(chars)
        elif name == "word_swap":
            for i in _chosen(rng, list(range(len(words) - 1)), rate, max_edits):
                words[i], words[i + 1] = words[i + 1], words[i]
        elif name == "punctuation":
            for i in reversed(_chosen(rng, list(range(len(words))), rate, max_edits)):
                words.insert(i + 1, PUNCTUATION[rng.integers(len(PUNCTUATION))])
        else:
            raise ValueError(f"unknown text augmentation {name!r} (known: {', '.join(TEXT_AUGMENTS)})")
        text = " ".join(w for w in words if w)
    return text


# ---------------------------------------------------------------- images


def augment_image(image: np.ndarray, augments: list[str], rng, crop_scale=(0.25, 1.0), jitter: float = 0.4) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image with the perturbations ``augments`` applied in order (see the module doc)."""
    from PIL import Image, ImageEnhance

    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    width, height = img.size
    for name in augments:
        if name == "crop":
            box = _crop_box(width, height, rng, crop_scale)
            img = img.resize((width, height), Image.BILINEAR, box=box)
        elif name == "flip":
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        elif name == "color_jitter":
            enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
            for k in rng.permutation(len(enhancers)):
                img = enhancers[k](img).enhance(float(rng.uniform(1 - jitter, 1 + jitter)))
        else:
            raise ValueError(f"unknown image augmentation {name!r} (known: {', '.join(IMAGE_AUGMENTS)})")
    return np.asarray(img, dtype=np.uint8)


def _crop_box(width: int, height: int, rng, scale) -> tuple[float, float, float, float]:
    """torchvision ``RandomResizedCrop.get_params`` (area in ``scale``, ratio in [3/4, 4/3]), as a float box."""
    area = width * height
    log_ratio = np.log([3 / 4, 4 / 3])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = np.exp(rng.uniform(*log_ratio))
        w, h = np.sqrt(target * ratio), np.sqrt(target / ratio)
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
            return (float(left), float(top), float(left + w), float(top + h))
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def _image_digest(image: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, image, allow_pickle=False)
    return digest_bytes(buf.getvalue())


# ---------------------------------------------------------------- the derived dataset


def derive(name: str, base: Samples, views: dict, augments: list[str]) -> Samples:
    """The views dataset ``name`` of ``base`` (see the module doc): unlabelled, with ``view_of`` and ``view``."""
    n_views = int(views["n"])
    seed = int(views.get("seed", 0))
    if views.get("n_samples") is not None:
        if views["n_samples"] > len(base):
            raise DatasetError(f"dataset {name!r}: views.n_samples={views['n_samples']} but the base dataset has "
                               f"{len(base)} samples", key="views.n_samples")
        rng = np.random.default_rng(seed)
        base = base.take(np.sort(rng.choice(len(base), size=views["n_samples"], replace=False)).tolist())
    text_augs = [a for a in augments if a in TEXT_AUGMENTS]
    image_augs = [a for a in augments if a in IMAGE_AUGMENTS]
    rate, max_edits = float(views.get("rate", 0.3)), int(views.get("max_edits", 10))
    crop_scale, jitter = tuple(views.get("crop_scale", (0.25, 1.0))), float(views.get("jitter", 0.4))
    from .images import load_image

    ids, view_of, view_index = [], [], []
    texts = [] if base.texts is not None else None
    images = [] if base.images is not None else None
    for i, sid in enumerate(base.ids):
        pixels = np.asarray(load_image(base.images[i])) if images is not None else None
        for k in range(n_views):
            rng = view_rng(seed, sid, k)
            ids.append(f"{sid}|view{k}")
            view_of.append(sid)
            view_index.append(k)
            if texts is not None:
                text = augment_text(base.texts[i], text_augs, rng, rate, max_edits) if text_augs else base.texts[i]
                if not text.strip():
                    raise DatasetError(f"dataset {name!r}: view {k} of sample {sid!r} is empty text after "
                                       f"{', '.join(text_augs)} (base text {base.texts[i]!r}); lower views.rate or "
                                       "leave char_delete out of views.augment", key="views.augment")
                texts.append(text)
            if images is not None:
                images.append(augment_image(pixels, image_augs, rng, crop_scale, jitter) if image_augs else pixels)
    digests = [_image_digest(im) for im in images] if images is not None else None
    return replace(Samples(ids, texts, images, digests), view_of=view_of, view=view_index)
