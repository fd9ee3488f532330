"""Labels of a dataset: where they come from (per source), how they are checked and encoded.

Sources of labels (dataset keys):

* ``jsonl``: ``label_field`` — the record's value (a string class name or a JSON number).
* ``text-file``: ``labels_path`` — a file with one label per line, line ``N`` labelling line ``N`` of the text file.
* ``image-folder``: ``labels: folder`` — the top-level folder under ``path`` that holds the image (torchvision
  ``ImageFolder`` / ImageNet convention ``path/CLASS/…/image.jpg``).
* ``builtin``: ``labels: builtin`` — ``digits``: the digit 0–9; ``truth``: ``"false"``/``"true"`` (always on).

``label_type`` is ``class`` (default) or ``regression``. Class names are strings: a JSON string as written, a JSON
number as JSON writes it (``3``, ``2.5``), ``true``/``false`` for JSON booleans, a line of ``labels_path``
stripped of surrounding whitespace, a folder name. Classes are indexed in sorted order: numerically when every
class name is a number (``"2" < "10"``), else by code point. Regression targets are float64: JSON numbers
(not strings, not booleans), or lines of ``labels_path`` / folder names that parse as finite numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import DatasetError, jsonl_records, text_lines

LABEL_TYPES = ("class", "regression")
BUILTIN_COLUMNS = {"truth": ("template",)}  # the per-sample string columns a builtin set carries


def label_source(spec: dict) -> str | None:
    """Which key supplies the labels of ``spec`` (``label_field``, ``labels_path``, ``labels``), or ``None``.

    A key that the dataset's source cannot use is a :class:`DatasetError` naming the key.
    """
    source, builtin = spec["source"], spec.get("name", "python-docs")
    keys = [k for k in ("label_field", "labels_path", "labels") if spec.get(k) is not None]
    if len(keys) > 1:
        raise DatasetError(f"labels come from one key, but {' and '.join(keys)} are both set", key=keys[1])
    allowed = {"jsonl": ("label_field", None), "text-file": ("labels_path", None),
               "image-folder": ("labels", "folder"), "builtin": ("labels", "builtin")}[source]
    if keys:
        key = keys[0]
        if key != allowed[0] or (key == "labels" and spec[key] != allowed[1]):
            hint = {"jsonl": "label_field", "text-file": "labels_path", "image-folder": "labels: folder",
                    "builtin": "labels: builtin (builtin digits and truth)"}[source]
            value = f": {spec[key]}" if key == "labels" else ""
            raise DatasetError(f"`{key}{value}` does not apply to source {source!r} (its labels come from {hint})",
                               key=key)
        if source == "builtin" and builtin not in ("digits", "truth"):
            raise DatasetError(f"builtin {builtin!r} has no labels (builtin digits and truth have)", key="labels")
    truth = source == "builtin" and builtin == "truth"
    for key in ("label_type", "transfer_by"):
        if spec.get(key) is not None and not keys and not truth:
            raise DatasetError(f"`{key}` is set but the dataset has no labels (set label_field, labels_path or "
                               "labels)", key=key)
    transfer_by = spec.get("transfer_by")
    if transfer_by is not None:
        if source not in ("jsonl", "builtin"):
            raise DatasetError(f"`transfer_by` needs a per-sample column: jsonl records have them (a record key), "
                               f"source {source!r} has none", key="transfer_by")
        if source == "builtin" and transfer_by not in BUILTIN_COLUMNS.get(builtin, ()):
            known = ", ".join(BUILTIN_COLUMNS.get(builtin, ())) or "none"
            raise DatasetError(f"builtin {builtin!r} has no column {transfer_by!r} (its columns: {known})",
                               key="transfer_by")
        from ..store import RESERVED_SAMPLE_COLUMNS

        if transfer_by in RESERVED_SAMPLE_COLUMNS:
            raise DatasetError(f"`transfer_by: {transfer_by}` names a column the label store reserves "
                               f"({', '.join(RESERVED_SAMPLE_COLUMNS)})", key="transfer_by")
    return keys[0] if keys else ("labels" if truth else None)


def raw_labels(name: str, spec: dict, ids: list[str]) -> tuple[list | None, dict[str, list[str]]]:
    """The raw label of every sample ``ids`` of the source (before any filter), and extra string columns.

    Returns ``(values, groups)``; ``values`` is ``None`` for an unlabelled dataset. A sample without a label is a
    :class:`DatasetError` naming the dataset, the file and the line (or the image).
    """
    key = label_source(spec)
    if key is None:
        return None, {}
    source, encoding = spec["source"], spec.get("encoding", "utf-8")
    if source == "jsonl":
        field, path = spec["label_field"], Path(spec["path"])
        column, values, groups = spec.get("transfer_by"), [], []
        for n, record in jsonl_records(path, encoding):
            value = record.get(field) if isinstance(record, dict) else None
            if value is None or (isinstance(value, str) and not value.strip()):
                if not isinstance(record, dict) or field not in record:
                    what = "missing"
                else:
                    what = "null" if value is None else f"empty ({value!r})"
                raise DatasetError(f"dataset {name!r}: {path}:{n}: label field {field!r} is {what}; every sample "
                                   "needs a label", key="label_field")
            if isinstance(value, (list, dict)):
                raise DatasetError(f"dataset {name!r}: {path}:{n}: label field {field!r} holds a "
                                   f"{type(value).__name__}, not a class name or a number", key="label_field")
            values.append((value, f"{path}:{n}"))
            if column is not None:
                groups.append(_column_value(record, column, name, f"{path}:{n}"))
        if len(values) != len(ids):  # pragma: no cover - the loaders read the same non-empty lines
            raise DatasetError(f"dataset {name!r}: {path}: {len(values)} labels for {len(ids)} records")
        return values, ({} if column is None else {column: groups})
    if source == "text-file":
        text_path, label_path = Path(spec["path"]), Path(spec["labels_path"])
        if not label_path.is_file():
            raise DatasetError(f"dataset {name!r}: labels file {label_path} does not exist", key="labels_path")
        labels = [line.strip() for _, line in text_lines(label_path, encoding)]
        n_text, n_labels = _content_lines(text_path, encoding), _content_lines(label_path, encoding, labels)
        if n_text != n_labels:
            raise DatasetError(f"dataset {name!r}: the labels file {label_path} has {n_labels} lines but the text "
                               f"file {text_path} has {n_text} (one label per text line, aligned; trailing empty "
                               "lines are ignored)", key="labels_path")
        values = []
        for sid in ids:  # ids are line:N of the non-empty text lines
            n = int(sid.split(":", 1)[1])
            if not labels[n - 1]:
                raise DatasetError(f"dataset {name!r}: {label_path}:{n}: empty label for line {n} of {text_path}; "
                                   "every sample needs a label", key="labels_path")
            values.append((labels[n - 1], f"{label_path}:{n}"))
        return values, {}
    if source == "image-folder":
        root = Path(spec["path"])
        values = []
        for sid in ids:  # ids are paths relative to the folder
            if "/" not in sid:
                raise DatasetError(f"dataset {name!r}: image {root / sid} lies directly in {root}, not in a class "
                                   f"folder (labels: folder reads the label from {root}/CLASS/…)", key="labels")
            values.append((sid.split("/", 1)[0], str(root / sid)))
        return values, {}
    builtin = spec.get("name", "python-docs")
    if builtin == "digits":
        from sklearn.datasets import load_digits

        target = load_digits().target
        return [(int(target[int(sid.split(":", 1)[1])]), sid) for sid in ids], {}
    from .truth import truth_labels

    labels, groups = truth_labels()
    return [(label, sid) for label, sid in zip(labels, ids)], {k: list(v) for k, v in groups.items()}


def _content_lines(path: Path, encoding: str, lines: list[str] | None = None) -> int:
    """Number of lines of a text file, trailing empty (whitespace-only) lines not counted."""
    if lines is None:
        lines = [line.strip() for _, line in text_lines(path, encoding)]
    n = len(lines)
    while n and not lines[n - 1]:
        n -= 1
    return n


def class_name(value) -> str:
    """The class name of a raw label: strings as written, JSON numbers as JSON writes them, booleans lower-case."""
    import json

    if isinstance(value, str):
        return value
    return json.dumps(value)


def _as_number(name: str) -> float | None:
    try:
        x = float(name)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def sort_classes(names) -> list[str]:
    """Distinct class names in index order: numerically when every name is a number, else by code point."""
    names = set(names)
    numbers = {n: _as_number(n) for n in names}
    if all(x is not None for x in numbers.values()):
        return sorted(names, key=lambda n: (numbers[n], n))
    return sorted(names)


def encode_labels(name: str, spec: dict, values: list) -> tuple[np.ndarray, list[str], str]:
    """``(labels, label_names, label_type)`` from raw ``(value, where)`` pairs.

    ``class``: int64 indices into ``label_names`` (sorted as :func:`sort_classes`). ``regression``: float64
    targets, ``label_names`` empty. A non-numeric regression target is a :class:`DatasetError` naming
    ``label_type`` and where the value is.
    """
    label_type = spec.get("label_type") or "class"
    if label_type not in LABEL_TYPES:
        raise DatasetError(f"dataset {name!r}: unknown label_type {label_type!r} (class or regression)",
                           key="label_type")
    if label_type == "regression":
        targets = []
        for value, where in values:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                x = None
            elif isinstance(value, str):
                x = _as_number(value) if spec["source"] != "jsonl" else None
            else:
                x = float(value) if math.isfinite(float(value)) else None
            if x is None:
                raise DatasetError(f"dataset {name!r}: label_type: regression needs finite numbers, but {where} "
                                   f"has the label {value!r}", key="label_type")
            targets.append(x)
        return np.asarray(targets, dtype=np.float64), [], label_type
    names = [class_name(v) for v, _ in values]
    label_names = sort_classes(names)
    index = {n: i for i, n in enumerate(label_names)}
    return np.asarray([index[n] for n in names], dtype=np.int64), label_names, label_type


def check_label_count(name: str, spec: dict, labels: np.ndarray, label_names: list[str], label_type: str,
                      what: str = "") -> None:
    """Fewer than 2 classes (``class``) or 2 distinct targets (``regression``) is a :class:`DatasetError`."""
    key = label_source(spec) or "labels"
    if label_type == "class":
        present = sorted({label_names[i] for i in np.unique(labels)}) if len(labels) else []
        if len(present) < 2:
            raise DatasetError(f"dataset {name!r}: labels from `{key}` give {len(present)} class{'es' * (len(present) != 1)}"
                               f" {present}{what}; label families need at least 2", key=key)
    elif len(np.unique(labels)) < 2:
        raise DatasetError(f"dataset {name!r}: the regression targets from `{key}` take fewer than 2 distinct "
                           f"values{what}", key=key)


def _column_value(record: dict, column: str, name: str, where: str) -> str:
    """The ``transfer_by`` column of one jsonl record as a string (a class name or a number); missing, null,
    empty or nested values are a :class:`DatasetError` naming the dataset and line."""
    value = record.get(column)
    if value is None or isinstance(value, (list, dict)) or (isinstance(value, str) and not value.strip()):
        what = "missing" if column not in record else f"{value!r}"
        raise DatasetError(f"dataset {name!r}: {where}: transfer_by column {column!r} is {what}; every sample "
                           "needs a value (a name or a number)", key="transfer_by")
    return str(value)
