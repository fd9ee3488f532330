"""Text sources: the builtin offline corpus, plain text files (one sample per line) and JSON lines."""

from __future__ import annotations

import re
from pathlib import Path

from . import DatasetError, jsonl_records, text_lines


def _normalise(text: str) -> str:
    return " ".join(text.split())


def builtin(spec: dict) -> tuple[list[str], list[str]]:
    """``python-docs``: the paragraphs of the Python reference topics shipped in ``pydoc_data.topics``.

    Deterministic and offline: topics in sorted order, paragraphs split on blank lines, whitespace collapsed;
    ids are ``TOPIC:PARAGRAPH`` (about 1 600 distinct paragraphs of ≥ 40 characters).
    """
    from pydoc_data.topics import topics

    ids, texts = [], []
    for topic in sorted(topics):
        for j, para in enumerate(re.split(r"\n\s*\n", topics[topic])):
            para = _normalise(para)
            if len(para) >= 40:
                ids.append(f"{topic}:{j}")
                texts.append(para)
    return ids, texts


def _path(spec: dict) -> Path:
    path = Path(spec["path"])
    if not path.is_file():
        raise DatasetError(f"dataset file {str(path)!r} does not exist (datasets.*.path)")
    return path


def text_file(spec: dict) -> tuple[list[str], list[str]]:
    """One sample per non-empty line; ids are ``line:N`` (1-based line numbers)."""
    ids, texts = [], []
    for n, line in text_lines(_path(spec), spec.get("encoding", "utf-8")):
        line = _normalise(line)
        if line:
            ids.append(f"line:{n}")
            texts.append(line)
    return ids, texts


def jsonl(spec: dict) -> tuple[list[str], list[str]]:
    """One JSON object per line; text from ``text_field``, id from ``id_field`` (else ``line:N``)."""
    text_field, id_field = spec.get("text_field", "text"), spec.get("id_field")
    ids, texts = [], []
    path = _path(spec)
    for n, record in jsonl_records(path, spec.get("encoding", "utf-8")):
        if text_field not in record:
            raise DatasetError(f"{path}:{n}: missing text field {text_field!r}")
        ids.append(str(record[id_field]) if id_field else f"line:{n}")
        texts.append(_normalise(str(record[text_field])))
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: sample ids in {id_field!r} are not unique")
    return ids, texts
