"""Datasets: pre-job checks (paths, n_samples), text encodings, and dropping unreadable images deterministically."""

import json

import numpy as np
import pytest
import xarray as xr
from conftest import TINY_BERT
from PIL import Image

from repbench.config import ConfigError, resolve, validate_config
from repbench.data import BUILTIN_SIZES, DatasetError, Samples, check_dataset, load_samples
from repbench.data.images import image_problem, load_image
from repbench.extract import extract

TEXT_MODEL = {"source": "random", "architecture": "bert", "tokenizer": "x"}
VIT = {"source": "random", "architecture": "vit", "modality": "vision", "seed": 0,
       "config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      image_size=32, patch_size=8)}


def config_error(dataset: dict, model=TEXT_MODEL) -> str:
    config = validate_config({"datasets": {"mydocs": dataset}, "models": {"m": model}})
    with pytest.raises(ConfigError) as err:
        resolve(config)
    return str(err.value)


def write_png(path, seed, size=(24, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def corrupt_images(root):
    """A truncated PNG (header intact, pixel data cut) and random bytes named .png."""
    full = write_png(root / "trunc.png", 999).read_bytes()
    (root / "trunc.png").write_bytes(full[: len(full) // 2])
    (root / "noise.png").write_bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    return ["noise.png", "trunc.png"]


# ------------------------------------------------------------------------------------------ pre-job checks
@pytest.mark.parametrize("source", ["text-file", "jsonl", "image-folder"])
def test_missing_path_stops_before_any_job(tmp_path, source):
    missing = tmp_path / "x" / "y.txt"
    modality = "vision" if source == "image-folder" else "text"
    model = VIT if modality == "vision" else TEXT_MODEL
    msg = config_error({"source": source, "path": str(missing), "modality": modality}, model)
    assert msg == f"invalid config at `datasets.mydocs.path`: {missing} does not exist"


def test_n_samples_beyond_the_data_names_the_key_and_the_count(tmp_path):
    path = tmp_path / "docs.txt"
    lines = [f"paragraph number {i}" for i in range(312)] + ["short", "", "paragraph number 0"]  # short, empty, dup
    path.write_text("\n".join(lines) + "\n")
    spec = {"source": "text-file", "path": str(path), "min_chars": 10}
    msg = config_error(dict(spec, n_samples=500))
    assert msg.startswith("invalid config at `datasets.mydocs.n_samples`: 500 requested but the file has 312 usable "
                          "samples (after min_chars=10"), msg
    assert check_dataset("mydocs", dict(spec, n_samples=312)) == 312 == len(load_samples("mydocs", spec))
    resolve(validate_config({"datasets": {"mydocs": dict(spec, n_samples=312)}, "models": {"m": TEXT_MODEL}}))
    msg = config_error({"source": "builtin", "n_samples": 100_000})
    assert msg == ("invalid config at `datasets.mydocs.n_samples`: 100000 requested but builtin 'python-docs' has "
                   "1625 distinct samples")


def test_check_counts_match_load_samples(tmp_path):
    path = tmp_path / "d.jsonl"
    texts = ["alpha beta", "gamma", "alpha  beta", "delta epsilon", "zeta"]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    spec = {"source": "jsonl", "path": str(path), "min_chars": 6}
    assert check_dataset("j", spec) == len(load_samples("j", spec)) == 2
    for builtin, sizes in BUILTIN_SIZES.items():
        for modality, size in sizes.items():
            spec = {"source": "builtin", "name": builtin, "modality": modality}
            assert check_dataset("b", spec) == len(load_samples("b", spec)) == size, (builtin, modality)


def test_image_counts_without_decoding(tmp_path):
    root = tmp_path / "imgs"
    for i in range(3):
        write_png(root / f"{i}.png", i)
    corrupt_images(root)
    spec = {"source": "image-folder", "path": str(root), "modality": "vision"}
    assert check_dataset("f", spec) == 5  # files, not decoded
    msg = config_error(dict(spec, n_samples=6), VIT)
    assert msg == "invalid config at `datasets.mydocs.n_samples`: 6 requested but the folder has 5 image files"
    rows = [{"image": f"imgs/{i}.png", "caption": c} for i, c in enumerate(["a cat", "a dog", "x"])]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paired = {"source": "jsonl", "path": str(pairs), "modality": "paired", "text_field": "caption", "min_chars": 2}
    assert check_dataset("p", paired) == 2
    with pytest.raises(DatasetError) as err:
        check_dataset("p", dict(paired, n_samples=3))
    assert err.value.key == "datasets.p.n_samples" and "2 records with a caption" in str(err.value)


# ------------------------------------------------------------------------------------------ encodings
LATIN = "first line\nsecond line\ncaf\u00e9 cr\u00e8me\nlast line\n"


@pytest.mark.parametrize("source", ["text-file", "jsonl"])
def test_non_utf8_text_names_file_line_and_the_encoding_key(tmp_path, source):
    path = tmp_path / f"docs.{source}"
    if source == "jsonl":
        path.write_bytes("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                                 for t in LATIN.splitlines()).encode("latin-1"))
    else:
        path.write_bytes(LATIN.encode("latin-1"))
    spec = {"source": source, "path": str(path)}
    with pytest.raises(DatasetError) as err:
        load_samples("mydocs", spec)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: not valid utf-8 text") and "`encoding`" in msg and "latin-1" in msg, msg
    assert config_error(spec).startswith(f"invalid config at `datasets.mydocs.encoding`: {path}:3: not valid utf-8")
    samples = load_samples("mydocs", dict(spec, encoding="latin-1"))
    assert samples.texts == LATIN.splitlines() and samples.ids[2] == "line:3"
    resolve(validate_config({"datasets": {"mydocs": dict(spec, encoding="latin-1")}, "models": {"m": TEXT_MODEL}}))


def test_encoding_default_and_unknown_encoding(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("caf\u00e9\n", encoding="utf-8")
    config = validate_config({"datasets": {"d": {"source": "text-file", "path": str(path)}},
                              "models": {"m": TEXT_MODEL}})
    assert config["datasets"]["d"]["encoding"] == "utf-8" and config["datasets"]["d"]["skip_unreadable"] is False
    assert load_samples("d", config["datasets"]["d"]).texts == ["caf\u00e9"]
    msg = config_error({"source": "text-file", "path": str(path), "encoding": "klingon"})
    assert msg.startswith("invalid config at `datasets.mydocs.encoding`: unknown text encoding 'klingon'")


# ------------------------------------------------------------------------------------------ unreadable images
def image_folder(tmp_path, n=12):
    root = tmp_path / "imgs"
    for i in range(n):
        write_png(root / f"img{i:02d}.png", i)
    return root


def test_unreadable_images_are_detected(tmp_path):
    root = image_folder(tmp_path, 1)
    corrupt_images(root)
    assert image_problem(str(root / "img00.png")) is None
    assert image_problem(str(root / "noise.png")) and image_problem(str(root / "trunc.png"))
    with Image.open(root / "trunc.png") as im:  # the header still opens: only decoding finds the damage
        assert im.size == (24, 20)


def test_unreadable_image_stops_extraction_by_default(tmp_path):
    root = image_folder(tmp_path, 3)
    corrupt_images(root)
    samples = load_samples("f", {"source": "image-folder", "path": str(root), "modality": "vision"})
    assert samples.skipped == [] and len(samples) == 5
    for bad in ("trunc.png", "noise.png"):
        with pytest.raises(DatasetError) as err:
            load_image(str(root / bad))
        msg = str(err.value)
        assert str(root / bad) in msg and "unreadable" in msg and "skip_unreadable" in msg, msg


def test_skip_unreadable_drops_before_the_seeded_draw(tmp_path, capsys):
    clean = image_folder(tmp_path / "clean")
    root = image_folder(tmp_path / "dirty")
    bad = corrupt_images(root)
    spec = {"source": "image-folder", "path": str(root), "modality": "vision", "n_samples": 8, "seed": 3,
            "skip_unreadable": True}
    a = load_samples("f", spec)
    out = capsys.readouterr().out
    assert "skipped 2 of 14 samples" in out and "noise.png" in out and "trunc.png" in out
    b = load_samples("f", spec)
    assert a.ids == b.ids and a.fingerprint() == b.fingerprint() and a.skipped == b.skipped == bad
    assert not set(a.ids) & set(bad)
    # the draw is the one over the readable files alone: same ids as a folder without the bad files
    reference = load_samples("f", dict(spec, path=str(clean)))
    assert a.ids == reference.ids and reference.skipped == []
    assert a.fingerprint() != reference.fingerprint()  # skipped ids enter the fingerprint
    assert Samples(a.ids, a.texts, a.images, a.image_digests).fingerprint() == reference.fingerprint()
    assert a.take([0, 1]).skipped == bad


def paired_jsonl(tmp_path, n=10):
    root = tmp_path / "pairs"
    rows = []
    for i in range(n):
        write_png(root / "img" / f"{i}.png", i)
        rows.append({"sid": f"s{i}", "image": f"img/{i}.png", "caption": f"picture number {i} of many"})
    bad = corrupt_images(root / "img")
    rows.insert(3, {"sid": "bad-noise", "image": f"img/{bad[0]}", "caption": "noise"})
    rows.insert(7, {"sid": "bad-trunc", "image": f"img/{bad[1]}", "caption": "truncated"})
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"source": "jsonl", "path": str(path), "modality": "paired", "id_field": "sid", "text_field": "caption",
            "n_samples": 6, "seed": 1, "skip_unreadable": True, "max_length": 16}


def test_paired_text_and_vision_models_drop_the_same_samples(tmp_path):
    spec = paired_jsonl(tmp_path)
    samples = load_samples("p", spec)
    assert samples.skipped == ["bad-noise", "bad-trunc"] and len(samples) == 6
    assert [t.split()[2] for t in samples.texts] == [i[1:] for i in samples.ids]  # captions stay with their images
    options = {"poolings": ["mean"], "store_dtype": "float32", "device": "cpu", "chunk_mb": 0.001}
    stores = {}
    for name, model in (("bert", TINY_BERT), ("vit", VIT)):
        out = tmp_path / "acts" / f"{name}.zarr"
        extract(model_name=name, model_spec=model, revision=None, dataset_name="p", dataset_spec=spec,
                options=options, output=out, partial_root=tmp_path / "partial", progress=False)
        stores[name] = xr.open_zarr(out)
    text, image = stores["bert"], stores["vit"]
    assert list(text["sample"].values) == list(image["sample"].values) == samples.ids
    for ds in (text, image):
        assert ds.attrs["n_skipped"] == 2 and ds.attrs["skipped_samples"] == ["bad-noise", "bad-trunc"]
        assert ds.attrs["dataset_fingerprint"] == samples.fingerprint()
        assert np.isfinite(ds["mean"].values).all()
