"""Augmented views as data: deterministic perturbations, the derived NAME.views dataset, its store and config."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from conftest import ROOT, TINY_BERT

from repbench.config import (
    ConfigError,
    extraction_spec,
    model_instances,
    resolve,
    validate_config,
    view_datasets,
    view_datasets_for,
)
from repbench.data import DatasetError, load_samples
from repbench.data import views as V

TRUTH = {"source": "builtin", "name": "truth", "n_samples": 30, "seed": 0, "max_length": 32}
DIGITS = {"source": "builtin", "name": "digits", "modality": "vision", "n_samples": 12, "seed": 0}
TEXT = "the quick brown fox jumps over seventeen lazy sleeping dogs near the riverbank"


def derived(spec, **views):
    return dict(spec, derive_views={"of": "base", **views})


def test_views_dataset_layout():
    base = load_samples("base", TRUTH)
    s = load_samples("base.views", derived(TRUTH, n=3))
    assert len(s) == 3 * len(base) and s.labels is None
    assert s.view_of == [sid for sid in base.ids for _ in range(3)]
    assert s.view == [0, 1, 2] * len(base)
    assert s.ids[:3] == [f"{base.ids[0]}|view{k}" for k in range(3)]
    assert all(t != base.texts[0] for t in s.texts[:3])  # the default chain always edits something here
    subset = load_samples("base.views", derived(TRUTH, n=2, n_samples=7, seed=3))
    assert len(subset) == 14 and set(subset.view_of) <= set(base.ids)


def test_a_view_depends_on_its_sample_seed_and_number_only():
    full = load_samples("base.views", derived(TRUTH, n=2))
    subset = load_samples("base.views", derived(TRUTH, n=2, n_samples=5))
    by_id = dict(zip(full.ids, full.texts))
    assert all(by_id[sid] == text for sid, text in zip(subset.ids, subset.texts))
    other_seed = load_samples("base.views", derived(TRUTH, n=2, seed=1))
    assert other_seed.texts != full.texts and other_seed.fingerprint() != full.fingerprint()


def test_same_seed_gives_byte_identical_views_in_a_new_process():
    code = ("import sys, hashlib; sys.path.insert(0, 'workflow'); from repbench.data import load_samples; "
            f"t = load_samples('b', {derived(TRUTH, n=2)!r}); "
            f"i = load_samples('b', {derived(DIGITS, n=2)!r}); "
            "print(hashlib.sha256('\\0'.join(t.texts).encode()).hexdigest(), "
            "hashlib.sha256(b''.join(x.tobytes() for x in i.images)).hexdigest())")
    runs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(runs) == 1
    here_t = load_samples("b", derived(TRUTH, n=2))
    here_i = load_samples("b", derived(DIGITS, n=2))
    import hashlib

    expected = (hashlib.sha256("\0".join(here_t.texts).encode()).hexdigest() + " "
                + hashlib.sha256(b"".join(x.tobytes() for x in here_i.images)).hexdigest())
    assert runs.pop().strip() == expected


def test_text_perturbations_do_what_they_say():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    words = TEXT.split()  # 13 words, 10 of them ≥ 4 characters (eligible for word edits): ceil(0.3·10) = 3 edits
    split = V.augment_text(TEXT, ["split"], rng(), rate=0.3)
    assert len(split.split()) == len(words) + 3 and split.replace(" ", "") == TEXT.replace(" ", "")
    swapped = V.augment_text(TEXT, ["word_swap"], rng(), rate=0.3)
    assert sorted(swapped.split()) == sorted(words) and swapped != TEXT
    punct = V.augment_text(TEXT, ["punctuation"], rng(), rate=0.3)
    assert [w for w in punct.split() if w not in V.PUNCTUATION] == words
    assert len(punct.split()) == len(words) + 4  # every word may take a mark: ceil(0.3·13)
    deleted = V.augment_text(TEXT, ["char_delete"], rng(), rate=0.3)
    assert len(deleted) < len(TEXT) and len(deleted.split()) == len(words)
    keyboard = V.augment_text(TEXT, ["keyboard"], rng(), rate=0.3)
    for old, new in zip(words, keyboard.split()):
        assert len(old) == len(new)
        for a, b in zip(old, new):
            assert a == b or b in V._KEYBOARD[a]
    substituted = V.augment_text(TEXT, ["char_substitute"], rng(), rate=0.3)
    changed = [o != n for o, n in zip(words, substituted.split())]
    assert sum(changed) == 3 and all(len(w) >= V.MIN_CHAR for w, c in zip(words, changed) if c)
    char_swap = V.augment_text(TEXT, ["char_swap"], rng(), rate=0.3)
    assert [sorted(w) for w in char_swap.split()] == [sorted(w) for w in words] and char_swap != TEXT
    assert V.augment_text("a an it", ["split", "char_substitute", "keyboard"], rng()) == "a an it"  # all < 4 chars
    assert len(V.augment_text(" ".join(["word"] * 100), ["split"], rng()).split()) == 110  # max_edits = 10


def test_image_perturbations_keep_the_shape_and_are_seeded():
    image = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
    out = V.augment_image(image, ["crop", "flip", "color_jitter"], np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    again = V.augment_image(image, ["crop", "flip", "color_jitter"], np.random.default_rng(1))
    assert out.tobytes() == again.tobytes()
    flips = {V.augment_image(image, ["flip"], np.random.default_rng(s)).tobytes() for s in range(20)}
    assert flips == {image.tobytes(), image[:, ::-1].tobytes()}
    full = V.augment_image(image, ["crop"], np.random.default_rng(0), crop_scale=(1.0, 1.0))
    assert full.shape == image.shape  # area 1 with ratio ≠ 1 does not fit: the central crop, the whole image
    for seed in range(30):
        left, top, right, bottom = V._crop_box(8, 8, np.random.default_rng(seed), (0.25, 1.0))
        assert 0 <= left < right <= 8 and 0 <= top < bottom <= 8
        assert 0.25 * 64 - 1e-9 <= (right - left) * (bottom - top) <= 64 + 1e-9


def test_an_empty_view_names_the_sample():
    from repbench.data import Samples

    with pytest.raises(DatasetError, match=r"view 0 of sample 's0' is empty text") as err:
        V.derive("t.views", Samples(["s0"], ["gone"]), {"n": 2, "rate": 1.0}, ["char_delete"])
    assert err.value.key == "views.augment"


# ------------------------------------------------------------------ config
def config(datasets, families=("geometry", "invariance"), models=None):
    return validate_config({"datasets": datasets, "models": models or {"bert": dict(TINY_BERT)},
                            "metrics": {"families": list(families)}, "alignment": {"enabled": False}})


def error(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        resolve(cfg)
    return str(err.value)


def test_views_derive_a_dataset_and_leave_the_base_spec_alone():
    with_views = config({"t": dict(TRUTH, views={"n": 2, "n_samples": 8})})
    without = config({"t": dict(TRUTH)})
    resolve(with_views)
    assert view_datasets(with_views) == {"t.views": "t"}
    assert extraction_spec(with_views, "t") == extraction_spec(without, "t")  # base jobs do not rerun
    spec = extraction_spec(with_views, "t.views")
    assert spec["derive_views"]["of"] == "t" and spec["derive_views"]["n"] == 2
    assert "label_field" not in spec and "views" not in spec
    inst = model_instances(with_views)[0]
    assert view_datasets_for(inst, with_views) == ["t.views"]
    samples = load_samples("t.views", spec)
    assert len(samples) == 16
    off = config({"t": dict(TRUTH, views={"n": 2})}, families=("geometry",))
    assert view_datasets(off) == {}


@pytest.mark.parametrize("datasets,families,key", [
    ({"t": dict(TRUTH, views={"n": 1})}, ("invariance",), "datasets.t.views.n"),
    ({"t": dict(TRUTH, views={"n": 2, "augment": ["split", "crop"]})}, ("invariance",), "datasets.t.views.augment.1"),
    ({"d": dict(DIGITS, views={"n": 2, "augment": ["keyboard"]})}, ("invariance",), "datasets.d.views.augment.0"),
    ({"t": dict(TRUTH, views={"n": 2})}, ("geometry",), "datasets.t.views"),
    ({"t": dict(TRUTH, views={"n": 2}), "t.views": dict(TRUTH)}, ("invariance",), "datasets.t.views"),
    ({"t": dict(TRUTH, views={"n": 2, "n_samples": 31})}, ("invariance",), "datasets.t.views.n_samples"),
    ({"t": dict(TRUTH, views={"n": 2, "crop_scale": [0.9, 0.1]})}, ("invariance",), "datasets.t.views.crop_scale"),
])
def test_bad_views_config_names_the_key(datasets, families, key):
    models = {"vit": {"source": "random", "architecture": "vit", "modality": "vision"}} if "d" in datasets else None
    try:
        cfg = config(datasets, families, models)
    except ConfigError as exc:  # schema errors come from validation already
        message = str(exc)
    else:
        message = error(cfg)
    assert f"`{key}`" in message, message


def test_views_store_carries_view_of_and_view_as_coordinates(tmp_path):
    from repbench.extract import extract

    spec = derived(TRUTH, n=2, n_samples=6)
    out = tmp_path / "acts.zarr"
    extract(model_name="bert", model_spec=dict(TINY_BERT), revision=None, dataset_name="base.views", dataset_spec=spec,
            options={"poolings": ["mean"], "store_dtype": "float32", "device": "cpu"}, output=out,
            partial_root=tmp_path / "partial", progress=False)
    ds = xr.open_zarr(out)
    assert {"view_of", "view"} <= set(ds.coords) and ds.sizes["sample"] == 12
    samples = load_samples("base.views", spec)
    assert [str(v) for v in ds["view_of"].values] == samples.view_of
    assert ds["view"].values.tolist() == samples.view
    assert ds.attrs["dataset_spec"]["derive_views"]["n"] == 2
