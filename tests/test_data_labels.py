"""Labelled datasets: labels per source, the builtin truth set, selection, errors, fingerprint and the store."""

import json
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import xarray as xr
from conftest import ROOT, TINY_BERT
from PIL import Image

from repbench import store
from repbench.config import ConfigError, resolve, validate_config
from repbench.data import BUILTIN_SIZES, DatasetError, Samples, check_dataset, label_counts, load_samples
from repbench.data.labels import sort_classes
from repbench.data.truth import MONTHS, TEMPLATES, WEEKDAYS, truth_statements

TEXT_MODEL = {"source": "random", "architecture": "bert", "tokenizer": "x"}
VIT = {"source": "random", "architecture": "vit", "modality": "vision", "seed": 0,
       "config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      image_size=32, patch_size=8)}


def config_error(dataset: dict, model=TEXT_MODEL) -> str:
    config = validate_config({"datasets": {"mydocs": dataset}, "models": {"m": model}})
    with pytest.raises(ConfigError) as err:
        resolve(config)
    return str(err.value)


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def colour_rows(n=30):
    """Record i: text naming i, class ``c{i % 3}`` (names out of order in the file), target 0.5·i."""
    return [{"id": f"r{i}", "text": f"record number {i} of the set", "colour": ["red", "blue", "green"][i % 3],
             "size": 0.5 * i} for i in range(n)]


def colour_spec(tmp_path, **extra):
    path = write_jsonl(tmp_path / "c.jsonl", colour_rows())
    return {"source": "jsonl", "path": str(path), "id_field": "id", "label_field": "colour", **extra}


# ------------------------------------------------------------------------------------------ sources
def test_jsonl_class_labels_sorted_by_name_and_aligned(tmp_path):
    spec = colour_spec(tmp_path)
    samples = load_samples("c", spec)
    assert samples.label_type == "class" and samples.label_names == ["blue", "green", "red"]
    assert samples.labels.dtype == np.int64
    expected = [["red", "blue", "green"][int(sid[1:]) % 3] for sid in samples.ids]
    assert [samples.label_names[k] for k in samples.labels] == expected
    assert label_counts(samples) == {"blue": 10, "green": 10, "red": 10}
    assert check_dataset("c", spec) == 30


def test_numeric_class_names_sort_numerically(tmp_path):
    rows = [{"text": f"t{i}", "y": y} for i, y in enumerate([10, 2, 2.5, 10, 2, -1])]
    samples = load_samples("n", {"source": "jsonl", "path": str(write_jsonl(tmp_path / "n.jsonl", rows)),
                                 "label_field": "y"})
    assert samples.label_names == ["-1", "2", "2.5", "10"]
    assert samples.labels.tolist() == [3, 1, 2, 3, 1, 0]
    assert sort_classes(["b", "10", "a", "2"]) == ["10", "2", "a", "b"]  # not all numbers: code point order
    bools = [{"text": f"t{i}", "y": i % 2 == 0} for i in range(4)]
    samples = load_samples("b", {"source": "jsonl", "path": str(write_jsonl(tmp_path / "b.jsonl", bools)),
                                 "label_field": "y"})
    assert samples.label_names == ["false", "true"] and samples.labels.tolist() == [1, 0, 1, 0]


def test_jsonl_regression_targets(tmp_path):
    samples = load_samples("r", colour_spec(tmp_path, label_field="size", label_type="regression"))
    assert samples.label_type == "regression" and samples.label_names == []
    assert samples.labels.dtype == np.float64
    assert samples.labels.tolist() == [0.5 * int(sid[1:]) for sid in samples.ids]
    with pytest.raises(ValueError, match="needs class labels"):
        label_counts(samples)


def test_text_file_labels_path_aligned_by_line(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("alpha sentence\n\nbeta sentence\ngamma sentence\n\n")
    labels = tmp_path / "t.labels"
    labels.write_text("pos\n\nneg\npos\n")  # line 2 is empty in both; trailing empty text lines do not count
    samples = load_samples("t", {"source": "text-file", "path": str(text), "labels_path": str(labels)})
    assert samples.ids == ["line:1", "line:3", "line:4"]
    assert samples.label_names == ["neg", "pos"] and samples.labels.tolist() == [1, 0, 1]


def image_classes(tmp_path, classes=("dog", "cat"), per_class=3):
    root = tmp_path / "imgs"
    for c, name in enumerate(classes):
        for i in range(per_class):
            path = root / name / ("sub" if i == 0 else "") / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            arr = np.random.default_rng(10 * c + i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(arr).save(path)
    return root


def test_image_folder_labels_from_the_class_folder(tmp_path):
    root = image_classes(tmp_path)
    spec = {"source": "image-folder", "path": str(root), "modality": "vision", "labels": "folder"}
    samples = load_samples("f", spec)
    assert samples.label_names == ["cat", "dog"]
    assert [samples.label_names[k] for k in samples.labels] == [sid.split("/")[0] for sid in samples.ids]
    assert "cat/sub/0.png" in samples.ids  # nested folders belong to their top-level class folder
    assert check_dataset("f", spec) == 6
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "loose.png")
    msg = config_error(spec, VIT)
    assert msg.startswith("invalid config at `datasets.mydocs.labels`:") and str(root / "loose.png") in msg, msg


def test_builtin_digits_labels_are_the_digits():
    from sklearn.datasets import load_digits

    target = load_digits().target
    for modality in ("vision", "paired"):
        samples = load_samples("d", {"source": "builtin", "name": "digits", "modality": modality,
                                     "labels": "builtin", "n_samples": 50, "seed": 2})
        assert samples.label_names == [str(d) for d in range(10)]
        rows = [int(sid.split(":")[1]) for sid in samples.ids]
        assert samples.labels.tolist() == target[rows].tolist()
    plain = load_samples("d", {"source": "builtin", "name": "digits", "modality": "vision", "n_samples": 50, "seed": 2})
    assert plain.labels is None and plain.ids == samples.ids


# ------------------------------------------------------------------------------------------ the truth set
def parse_truth(statement: str) -> tuple[str, bool]:
    """Independent check of a statement: its template and whether it is true."""
    day, month = {d: i for i, d in enumerate(WEEKDAYS)}, {m: i for i, m in enumerate(MONTHS)}
    if m := re.fullmatch(r"(\d+) is (greater|less) than (\d+)\.", statement):
        a, b = int(m[1]), int(m[3])
        return m[2], (a > b) if m[2] == "greater" else (a < b)
    if m := re.fullmatch(r"(\d+) (plus|minus|times) (\d+) equals (\d+)\.", statement):
        a, b, c = int(m[1]), int(m[3]), int(m[4])
        name = {"plus": "addition", "minus": "subtraction", "times": "multiplication"}[m[2]]
        return name, {"plus": a + b, "minus": a - b, "times": a * b}[m[2]] == c
    if m := re.fullmatch(r"(\d+) is an (even|odd) number\.", statement):
        return "parity", int(m[1]) % 2 == (0 if m[2] == "even" else 1)
    if m := re.fullmatch(r"The letter ([a-z]) comes after the letter ([a-z]) in the alphabet\.", statement):
        return "letters", m[1] > m[2]
    if m := re.fullmatch(r"(\w+) comes after (\w+)\.", statement):
        return "weekdays", day[m[1]] > day[m[2]]
    if m := re.fullmatch(r"(\w+) comes before (\w+)\.", statement):
        return "months", month[m[1]] < month[m[2]]
    raise AssertionError(f"unparsed statement {statement!r}")


def test_truth_labels_match_the_statements_and_classes_balance():
    samples = load_samples("truth", {"source": "builtin", "name": "truth"})
    assert len(samples) == BUILTIN_SIZES["truth"]["text"] >= 2000
    assert samples.label_names == ["false", "true"] and samples.label_type == "class"
    assert len(set(samples.texts)) == len(samples)
    templates = samples.groups["template"]
    assert set(templates) == set(TEMPLATES) and len(TEMPLATES) >= 6
    for text, label, template in zip(samples.texts, samples.labels, templates):
        assert parse_truth(text) == (template, bool(label)), text
    per_template = Counter(zip(templates, samples.labels.tolist()))
    for template in TEMPLATES:
        assert per_template[template, 0] == per_template[template, 1] > 0, template
    assert check_dataset("truth", {"source": "builtin", "name": "truth"}) == len(samples)


def test_truth_is_byte_identical_across_processes():
    data = json.dumps(truth_statements()).encode()
    code = ("import json, sys; from repbench.data.truth import truth_statements; "
            "sys.stdout.write(json.dumps(truth_statements()))")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(ROOT / "workflow"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout
    assert out == data
    assert truth_statements.__wrapped__(seed=1) != truth_statements()  # the generator seed matters


def test_truth_selection_keeps_templates_with_their_statements():
    spec = {"source": "builtin", "name": "truth", "n_samples": 200, "seed": 4}
    full, part = load_samples("t", {"source": "builtin", "name": "truth"}), load_samples("t", spec)
    row = {sid: i for i, sid in enumerate(full.ids)}
    for i, sid in enumerate(part.ids):
        j = row[sid]
        assert part.texts[i] == full.texts[j] and part.labels[i] == full.labels[j]
        assert part.groups["template"][i] == full.groups["template"][j]


# ------------------------------------------------------------------------------------------ selection
def test_selection_keeps_labels_with_their_samples_and_drops_absent_classes(tmp_path):
    spec = colour_spec(tmp_path, n_samples=12, seed=5)
    samples = load_samples("c", spec)
    assert len(samples) == 12
    assert [samples.label_names[k] for k in samples.labels] == [
        ["red", "blue", "green"][int(sid[1:]) % 3] for sid in samples.ids]
    rows = [{"text": f"sample {i}", "y": "rare" if i == 0 else ("a" if i % 2 else "b")} for i in range(40)]
    path = write_jsonl(tmp_path / "rare.jsonl", rows)
    seed = next(s for s in range(100) if 0 not in np.random.default_rng(s).choice(40, size=10, replace=False))
    spec = {"source": "jsonl", "path": str(path), "label_field": "y", "n_samples": 10, "seed": seed}
    drawn = load_samples("r", spec)
    assert "line:1" not in drawn.ids  # the only 'rare' sample is not drawn with this seed
    assert drawn.label_names == ["a", "b"] and set(drawn.labels.tolist()) == {0, 1}
    assert load_samples("r", dict(spec, n_samples=None)).label_names == ["a", "b", "rare"]
    sub = drawn.take([0, 1])
    assert sub.labels.tolist() == drawn.labels[:2].tolist() and sub.label_names == drawn.label_names


def test_duplicate_inputs_keep_the_first_label(tmp_path):
    rows = [{"text": "same words", "y": "b"}, {"text": "other words", "y": "a"}, {"text": "same words", "y": "a"}]
    samples = load_samples("d", {"source": "jsonl", "path": str(write_jsonl(tmp_path / "d.jsonl", rows)),
                                 "label_field": "y"})
    assert samples.ids == ["line:1", "line:2"] and samples.labels.tolist() == [1, 0]


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad, what", [({"text": "no label here"}, "missing"), ({"text": "x y", "colour": ""}, "empty"),
                                       ({"text": "x y", "colour": None}, "null"), ({"text": "x", "colour": "  "}, "empty")])
def test_sample_without_a_label_names_dataset_file_and_line(tmp_path, bad, what):
    path = write_jsonl(tmp_path / "c.jsonl", colour_rows(4) + [bad] + colour_rows(2))
    spec = {"source": "jsonl", "path": str(path), "label_field": "colour"}
    msg = config_error(spec)
    assert msg.startswith("invalid config at `datasets.mydocs.label_field`: dataset 'mydocs': ") and f"{path}:5:" in msg
    assert what in msg, msg
    with pytest.raises(DatasetError, match=re.escape(f"dataset 'job': {path}:5: label field 'colour' is {what}")):
        load_samples("job", spec)


def test_a_single_class_names_dataset_and_key(tmp_path):
    rows = [{"text": f"t{i}", "y": "only"} for i in range(5)]
    spec = {"source": "jsonl", "path": str(write_jsonl(tmp_path / "o.jsonl", rows)), "label_field": "y"}
    msg = config_error(spec)
    assert msg.startswith("invalid config at `datasets.mydocs.label_field`: dataset 'mydocs': labels from "
                          "`label_field` give 1 class ['only']"), msg
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    (tmp_path / "t.labels").write_text("x\nx\n")
    with pytest.raises(DatasetError, match="dataset 'tf': labels from `labels_path` give 1 class"):
        load_samples("tf", {"source": "text-file", "path": str(texts), "labels_path": str(tmp_path / "t.labels")})
    # the whole file has 2 classes, but the drawn samples only 1: an error of the extraction job
    rows = [{"text": f"t{i}", "y": "b" if i == 0 else "a"} for i in range(30)]
    spec = {"source": "jsonl", "path": str(write_jsonl(tmp_path / "d.jsonl", rows)), "label_field": "y",
            "n_samples": 3, "seed": 0}
    assert check_dataset("d", spec) == 30
    with pytest.raises(DatasetError, match="give 1 class \\['a'\\] among the selected samples"):
        load_samples("d", spec)


def test_regression_needs_numbers(tmp_path):
    msg = config_error(colour_spec(tmp_path, label_type="regression"))
    assert msg.startswith("invalid config at `datasets.mydocs.label_type`: dataset 'mydocs': label_type: regression "
                          f"needs finite numbers, but {tmp_path / 'c.jsonl'}:1 has the label 'red'"), msg
    rows = [{"text": f"t{i}", "y": str(i)} for i in range(4)]  # numbers as JSON strings are class names
    msg = config_error({"source": "jsonl", "path": str(write_jsonl(tmp_path / "s.jsonl", rows)), "label_field": "y",
                        "label_type": "regression"})
    assert "`datasets.mydocs.label_type`" in msg and "has the label '0'" in msg
    msg = config_error({"source": "builtin", "name": "truth", "label_type": "regression"})
    assert msg.startswith("invalid config at `datasets.mydocs.label_type`:") and "truth:0000 has the label" in msg, msg
    texts, labels = tmp_path / "t.txt", tmp_path / "t.labels"
    texts.write_text("one\ntwo\nthree\n")
    labels.write_text("1.5\n-2\n1e3\n")
    samples = load_samples("t", {"source": "text-file", "path": str(texts), "labels_path": str(labels),
                                 "label_type": "regression"})
    assert samples.labels.tolist() == [1.5, -2.0, 1000.0]


def test_labels_file_length_mismatch_names_both_files(tmp_path):
    texts, labels = tmp_path / "t.txt", tmp_path / "t.labels"
    texts.write_text("one\ntwo\nthree\n")
    labels.write_text("a\nb\n")
    msg = config_error({"source": "text-file", "path": str(texts), "labels_path": str(labels)})
    assert msg == (f"invalid config at `datasets.mydocs.labels_path`: dataset 'mydocs': the labels file {labels} has "
                   f"2 lines but the text file {texts} has 3 (one label per text line, aligned; trailing empty lines "
                   "are ignored)")
    labels.write_text("a\n\nb\n")
    msg = config_error({"source": "text-file", "path": str(texts), "labels_path": str(labels)})
    assert f"{labels}:2: empty label for line 2 of {texts}" in msg, msg
    msg = config_error({"source": "text-file", "path": str(texts), "labels_path": str(tmp_path / "none")})
    assert msg.startswith("invalid config at `datasets.mydocs.labels_path`:") and "does not exist" in msg


@pytest.mark.parametrize("dataset, key", [
    ({"source": "builtin", "labels": "builtin"}, "labels"),                       # python-docs has no labels
    ({"source": "builtin", "name": "digits", "modality": "vision", "labels": "folder"}, "labels"),
    ({"source": "builtin", "label_type": "class"}, "label_type"),                # label_type without labels
])
def test_label_keys_that_do_not_fit_the_source(dataset, key):
    msg = config_error(dataset, VIT if dataset.get("modality") == "vision" else TEXT_MODEL)
    assert msg.startswith(f"invalid config at `datasets.mydocs.{key}`:"), msg


def test_label_keys_of_other_sources(tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    msg = config_error({"source": "text-file", "path": str(texts), "label_field": "y"})
    assert msg.startswith("invalid config at `datasets.mydocs.label_field`: `label_field` does not apply to source "
                          "'text-file' (its labels come from labels_path)"), msg
    msg = config_error(colour_spec(tmp_path, labels_path=str(texts)))
    assert msg.startswith("invalid config at `datasets.mydocs.labels_path`:"), msg


def test_transfer_by_reads_a_jsonl_column_and_checks_it(tmp_path):
    """transfer_by: a jsonl record key becomes a string column of the samples (numbers as text); missing values
    name the line; sources without columns, builtin sets without it and reserved names are config errors."""
    samples = load_samples("c", colour_spec(tmp_path, transfer_by="size"))
    assert samples.groups == {"size": [str(0.5 * int(sid[1:])) for sid in samples.ids]}
    assert load_samples("t", {"source": "builtin", "name": "truth", "transfer_by": "template"}).groups["template"]
    rows = colour_rows()
    del rows[4]["size"]
    path = write_jsonl(tmp_path / "holes.jsonl", rows)
    msg = config_error({"source": "jsonl", "path": str(path), "id_field": "id", "label_field": "colour",
                        "transfer_by": "size"})
    assert msg.startswith("invalid config at `datasets.mydocs.transfer_by`: dataset 'mydocs': ") and \
        f"{path}:5: transfer_by column 'size' is missing" in msg, msg
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    for dataset, needle in [
        ({"source": "builtin", "name": "truth", "transfer_by": "topic"}, "builtin 'truth' has no column 'topic' "
                                                                          "(its columns: template)"),
        ({"source": "builtin", "transfer_by": "template"}, "`transfer_by` is set but the dataset has no labels"),
        ({"source": "text-file", "path": str(texts), "labels_path": str(texts), "transfer_by": "x"},
         "source 'text-file' has none"),
        (colour_spec(tmp_path, transfer_by="label"), "names a column the label store reserves"),
    ]:
        msg = config_error(dataset)
        assert msg.startswith("invalid config at `datasets.mydocs.transfer_by`:") and needle in msg, msg


# ------------------------------------------------------------------------------------------ fingerprint
def test_labels_enter_the_fingerprint_only_when_present(tmp_path):
    spec = colour_spec(tmp_path)
    labelled = load_samples("c", spec)
    plain = load_samples("c", {k: v for k, v in spec.items() if k != "label_field"})
    assert plain.labels is None and plain.ids == labelled.ids and plain.texts == labelled.texts
    bare = Samples(labelled.ids, labelled.texts)
    assert plain.fingerprint() == bare.fingerprint() != labelled.fingerprint()
    flipped = Samples(labelled.ids, labelled.texts, labels=labelled.labels[::-1].copy(),
                      label_names=labelled.label_names, label_type="class")
    renamed = Samples(labelled.ids, labelled.texts, labels=labelled.labels, label_names=["B", "G", "R"],
                      label_type="class")
    grouped = Samples(labelled.ids, labelled.texts, labels=labelled.labels, label_names=labelled.label_names,
                      label_type="class", groups={"template": ["x"] * len(labelled)})
    prints = {s.fingerprint() for s in (labelled, flipped, renamed, grouped)}
    assert len(prints) == 4
    assert load_samples("c", spec).fingerprint() == labelled.fingerprint()


# ------------------------------------------------------------------------------------------ store
def test_label_store_round_trip_and_alignment_to_activations(tmp_path):
    """The labels stage's store holds the drawn samples' labels; aligned to an activation store (extracted without
    the label keys, as the workflow does) they follow its sample order, and an extraction is the same with or
    without labels in the dataset."""
    from types import SimpleNamespace

    from repbench.extract import extract
    from repbench.stages.labels import labels as labels_stage

    spec = colour_spec(tmp_path, n_samples=16, seed=1, max_length=16)
    samples = load_samples("c", spec)
    labels_path = tmp_path / "labels" / "c.zarr"
    labels_path.parent.mkdir()
    labels_stage(SimpleNamespace(wildcards=SimpleNamespace(dataset="c"), params=SimpleNamespace(spec=spec),
                                 output=[str(labels_path)]))
    labels, label_names, label_type, groups = store.read_labels(labels_path)
    assert labels.tolist() == samples.labels.tolist() and labels.dtype == np.int64
    assert label_names == ["blue", "green", "red"] and label_type == "class" and groups == {}
    ds = xr.open_zarr(labels_path)
    assert ds["label"].values.tolist() == samples.labels.tolist() and list(ds["sample"].values) == samples.ids
    assert ds.attrs["label_names"] == label_names and ds.attrs["dataset_fingerprint"] == samples.fingerprint()
    options = {"poolings": ["mean"], "store_dtype": "float32", "device": "cpu", "chunk_mb": 0.001}
    outs = {}
    for name, dataset in (("labelled", spec), ("plain", {k: v for k, v in spec.items() if k != "label_field"})):
        outs[name] = tmp_path / "acts" / f"{name}.zarr"
        extract(model_name="tiny", model_spec=TINY_BERT, revision=None, dataset_name="c", dataset_spec=dataset,
                options=options, output=outs[name], partial_root=tmp_path / "partial", progress=False)
    plain, labelled = xr.open_zarr(outs["plain"]), xr.open_zarr(outs["labelled"])
    np.testing.assert_array_equal(plain["mean"].values, labelled["mean"].values)  # labels change no activation
    assert store.read_labels(outs["plain"]) == (None, [], None, {})
    aligned = store.aligned_labels(labels_path, outs["plain"])
    position = {sample: i for i, sample in enumerate(samples.ids)}
    order = [position[sample] for sample in plain["sample"].values]
    assert aligned[0].tolist() == samples.labels[order].tolist()
    other = tmp_path / "other.zarr"
    store.write_labels(other, sample_ids=[f"x{i}" for i in range(16)], labels=np.zeros(16, dtype=np.int64),
                       label_names=["a"], label_type="class")
    with pytest.raises(ValueError, match="16 samples have no label"):
        store.aligned_labels(other, outs["plain"])


def test_label_store_writes_group_columns_and_regression_targets(tmp_path):
    ids = [f"s{i}" for i in range(5)]
    path = tmp_path / "a.zarr"
    store.write_labels(path, sample_ids=ids, labels=np.array([0.0, 1.5, -2, 0, 3]), label_names=[],
                       label_type="regression", groups={"template": list("abcab")})
    labels, names, label_type, groups = store.read_labels(path)
    assert labels.tolist() == [0.0, 1.5, -2.0, 0.0, 3.0] and labels.dtype == np.float64
    assert names == [] and label_type == "regression" and groups["template"].tolist() == list("abcab")
    assert xr.open_zarr(path)["template"].values.tolist() == list("abcab")
    with pytest.raises(ValueError, match="'label' cannot be stored"):
        store.write_labels(tmp_path / "b.zarr", sample_ids=ids, labels=np.zeros(5), label_names=["x"],
                           label_type="class", groups={"label": ["x"] * 5})
    with pytest.raises(ValueError, match="4 values, but the store has 5 samples"):
        store.write_labels(tmp_path / "c.zarr", sample_ids=ids, labels=np.zeros(5), label_names=["x"],
                           label_type="class", groups={"template": ["x"] * 4})


def test_paired_jsonl_labels_serve_both_modalities(tmp_path):
    rows = []
    for i in range(6):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(path)
        rows.append({"sid": f"s{i}", "image": f"img/{i}.png", "caption": f"picture {i}", "kind": ["x", "y"][i % 2]})
    spec = {"source": "jsonl", "path": str(write_jsonl(tmp_path / "p.jsonl", rows)), "modality": "paired",
            "id_field": "sid", "text_field": "caption", "label_field": "kind", "n_samples": 4, "seed": 2}
    samples = load_samples("p", spec)
    assert samples.label_names == ["x", "y"]
    assert [samples.label_names[k] for k in samples.labels] == [["x", "y"][int(s[1:]) % 2] for s in samples.ids]
    assert check_dataset("p", spec) == 6
