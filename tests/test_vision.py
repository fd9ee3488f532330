"""Vision models and image / paired image–text data: hooks against output_hidden_states, poolings, stores, loaders.

Tiny random-init ViT, DINOv2, CLIP vision tower and ConvNeXt built from configs; image processors built offline.
"""

import json

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import ROOT, TINY_BERT

from repbench.config import ConfigError, datasets_for, load_config, resolve, validate_config
from repbench.data import DatasetError, load_samples
from repbench.data.images import load_image
from repbench.extract import ImageFeed, LayerPooler, PoolingError, extract, pool_vision
from repbench.models import load_model
from repbench.models.vision import prefix_tokens


def vision(arch, **config):
    return {"source": "random", "architecture": arch, "modality": "vision", "seed": 0, "config": config}


VIT_CFG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
               patch_size=8)
TINY_VISION = {
    "vit": vision("vit", **VIT_CFG),
    "dinov2": vision("dinov2", **{k: v for k, v in VIT_CFG.items() if k != "intermediate_size"}),
    "clip_vision_model": vision("clip_vision_model", **VIT_CFG),
    "convnext": vision("convnext", hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=32),
}
PAIRED = {"source": "builtin", "name": "digits", "modality": "paired", "n_samples": 20, "seed": 0, "max_length": 32}
VISION_DS = dict(PAIRED, modality="vision")
OPTIONS = {"poolings": ["mean", "last", "first"], "store_dtype": "float32", "device": "cpu", "chunk_mb": 0.001}


def pixels(loaded, n=3):
    samples = load_samples("d", VISION_DS)
    return ImageFeed(loaded.image_processor, samples.images[:n]).pixels(0, n)


def run(tmp_path, name, spec, dataset=PAIRED, options=OPTIONS):
    out = tmp_path / "acts" / f"{name}.zarr"
    extract(model_name=name, model_spec=spec, revision=None, dataset_name="d", dataset_spec=dataset,
            options=options, output=out, partial_root=tmp_path / "partial" / "activations" / "d", progress=False)
    return xr.open_zarr(out)


@pytest.mark.parametrize("arch", list(TINY_VISION))
def test_vision_hooks_equal_output_hidden_states(arch):
    loaded = load_model("v", TINY_VISION[arch])
    model, x = loaded.model, pixels(loaded)
    spatial = arch == "convnext"
    poolings = ["mean"] if spatial else ["mean", "last", "first"]
    n_prefix = prefix_tokens(model)
    with torch.no_grad():
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states
    width = max(h.shape[1] if h.ndim == 4 else h.shape[-1] for h in hidden)
    pooler = LayerPooler(model, poolings, modality="vision", n_prefix=n_prefix, width=width)
    got = pooler(pixel_values=x)
    pooler.remove()
    assert pooler.n_layers == len(hidden)
    for p, value in got.items():
        assert value.shape == (len(hidden), 3, width)
        for layer, h in enumerate(hidden):
            ref = pool_vision(h, n_prefix, [p])[p]
            torch.testing.assert_close(value[layer, :, : ref.shape[-1]], ref, rtol=0, atol=0)
            assert not value[layer, :, ref.shape[-1] :].any()  # zero padding beyond the layer's width


def test_vision_poolings_by_hand():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # CLS + 3 patches
    out = pool_vision(h, 1, ["mean", "first", "last"])
    torch.testing.assert_close(out["mean"], h[:, 1:].mean(1))
    torch.testing.assert_close(out["first"], h[:, 0])
    torch.testing.assert_close(out["last"], h[:, 3])
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    torch.testing.assert_close(pool_vision(maps, 0, ["mean"])["mean"], maps.mean(dim=(2, 3)))
    with pytest.raises(PoolingError, match="no CLS token"):
        pool_vision(h, 0, ["first"])
    with pytest.raises(PoolingError, match="spatial"):
        pool_vision(maps, 0, ["first"])


def test_prefix_tokens_detected():
    assert prefix_tokens(load_model("v", TINY_VISION["vit"]).model) == 1
    assert prefix_tokens(load_model("v", TINY_VISION["dinov2"]).model) == 1
    assert prefix_tokens(load_model("v", TINY_VISION["clip_vision_model"]).model) == 1
    assert prefix_tokens(load_model("v", TINY_VISION["convnext"]).model) == 0
    reg = vision("dinov2_with_registers", num_register_tokens=4,
                 **{k: v for k, v in VIT_CFG.items() if k != "intermediate_size"})
    assert prefix_tokens(load_model("v", reg).model) == 5


def test_image_processor_sized_from_config_or_options():
    loaded = load_model("v", TINY_VISION["vit"])  # no image_processor: sized to config.image_size
    assert tuple(pixels(loaded).shape) == (3, 3, 32, 32)
    assert loaded.provenance["image_processor"].startswith("ViTImageProcessor")
    spec = dict(TINY_VISION["dinov2"], image_processor={"size": {"shortest_edge": 40},
                                                         "crop_size": {"height": 32, "width": 32}})
    loaded = load_model("v", spec)
    assert tuple(pixels(loaded).shape) == (3, 3, 32, 32)
    assert loaded.provenance["image_processor_config"]["size"]["shortest_edge"] == 40


def test_vision_store_layout_and_cls_values(tmp_path):
    ds = run(tmp_path, "vit", TINY_VISION["vit"], dataset=VISION_DS)
    samples = load_samples("d", VISION_DS)
    assert dict(ds.sizes) == {"layer": 3, "sample": 20, "feature": 32}
    assert list(ds["sample"].values) == samples.ids
    assert ds.attrs["modality"] == "vision" and ds.attrs["n_prefix_tokens"] == 1 and ds.attrs["layout"] == "tokens"
    assert ds.attrs["dataset_modality"] == "vision"
    loaded = load_model("vit", TINY_VISION["vit"])
    x = ImageFeed(loaded.image_processor, samples.images[:2]).pixels(0, 2)
    with torch.no_grad():
        hidden = loaded.model(pixel_values=x, output_hidden_states=True).hidden_states
    for layer, h in enumerate(hidden):
        np.testing.assert_allclose(ds["first"].values[layer, :2], h[:, 0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ds["mean"].values[layer, :2], h[:, 1:].mean(1).numpy(), rtol=1e-5, atol=1e-6)


def test_paired_dataset_gives_text_and_vision_models_the_same_samples(tmp_path):
    text = run(tmp_path, "bert", TINY_BERT)
    image = run(tmp_path, "vit", TINY_VISION["vit"])
    assert list(text["sample"].values) == list(image["sample"].values)
    assert text.attrs["dataset_fingerprint"] == image.attrs["dataset_fingerprint"]
    assert text.attrs["dataset_modality"] == image.attrs["dataset_modality"] == "paired"
    samples = load_samples("d", PAIRED)
    assert samples.texts[0].startswith("a ") and "handwritten digit" in samples.texts[0]
    # the text store holds the captions' activations
    loaded = load_model("bert", TINY_BERT)
    enc = loaded.tokenizer(samples.texts[:1], truncation=True, max_length=32)["input_ids"]
    with torch.no_grad():
        hs = loaded.model(input_ids=torch.tensor(enc), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(text["mean"].values[:, 0], torch.stack([h[0].mean(0) for h in hs]).numpy(),
                               rtol=1e-4, atol=1e-5)


def test_convnext_pads_stage_widths_and_refuses_token_poolings(tmp_path):
    with pytest.raises(PoolingError, match="only 'mean'.*extract.poolings: \\[mean\\]"):
        run(tmp_path, "cnx", TINY_VISION["convnext"])
    ds = run(tmp_path, "cnx", TINY_VISION["convnext"], options=dict(OPTIONS, poolings=["mean"]))
    assert dict(ds.sizes) == {"layer": 5, "sample": 20, "feature": 64}
    assert ds.attrs["layer_widths"] == [8, 8, 16, 32, 64] and ds.attrs["feature_padding"] is True
    assert list(ds["layer_width"].values) == [8, 8, 16, 32, 64]
    values = ds["mean"].values
    for layer, w in enumerate(ds.attrs["layer_widths"]):
        assert not values[layer, :, w:].any() and values[layer, :, :w].any()


def test_model_without_cls_token_refuses_first_pooling(tmp_path):
    spec = dict(TINY_VISION["vit"], prefix_tokens=0)
    with pytest.raises(PoolingError, match="no CLS token"):
        run(tmp_path, "v", spec)
    ds = run(tmp_path, "v", spec, options=dict(OPTIONS, poolings=["mean", "last"]))
    assert ds.attrs["n_prefix_tokens"] == 0


def test_modality_mismatch_is_a_clear_error(tmp_path):
    docs = {"source": "builtin", "n_samples": 5}
    with pytest.raises(ValueError, match="no images for vision model"):
        run(tmp_path, "vit", TINY_VISION["vit"], dataset=docs)
    with pytest.raises(ValueError, match="no texts for text model"):
        run(tmp_path, "bert", TINY_BERT, dataset=VISION_DS)
    with pytest.raises(DatasetError, match="has no images"):
        load_samples("d", dict(docs, modality="paired"))


def write_png(path, value, size=(6, 5)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    arr[0, 0] = (value * 7) % 256
    Image.fromarray(arr).save(path)


def test_image_folder(tmp_path):
    root = tmp_path / "imgs"
    write_png(root / "b" / "2.png", 20)
    write_png(root / "a.png", 10)
    write_png(root / "b" / "dup.png", 10)  # same pixels and bytes as a.png: dropped as a duplicate
    (root / "notes.txt").write_text("not an image")
    s = load_samples("f", {"source": "image-folder", "path": str(root), "modality": "vision"})
    assert s.ids == ["a.png", "b/2.png"] and s.texts is None and s.modality == "vision"
    assert load_image(s.images[1]).size == (6, 5)
    with pytest.raises(DatasetError, match="does not exist"):
        load_samples("f", {"source": "image-folder", "path": str(tmp_path / "nope"), "modality": "vision"})


def test_paired_jsonl(tmp_path):
    write_png(tmp_path / "img" / "1.png", 1)
    write_png(tmp_path / "img" / "2.png", 2)
    rows = [{"sample_id": "x1", "image": "img/1.png", "caption": "a  red square"},
            {"sample_id": "x2", "image": str(tmp_path / "img" / "2.png"), "caption": "a blue square"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"source": "jsonl", "path": str(path), "modality": "paired", "id_field": "sample_id",
            "text_field": "caption", "image_field": "image"}
    s = load_samples("w", spec)
    assert s.ids == ["x1", "x2"] and s.texts == ["a red square", "a blue square"] and len(s.images) == 2
    assert s.modality == "paired"
    text_only = load_samples("w", dict(spec, modality="vision"))
    assert text_only.texts is None and text_only.fingerprint() != s.fingerprint()
    path.write_text(json.dumps(dict(rows[0], image="img/missing.png")) + "\n")
    with pytest.raises(DatasetError, match="missing.png' does not exist"):
        load_samples("w", spec)
    path.write_text(json.dumps({"sample_id": "x1", "image": "img/1.png"}) + "\n")
    with pytest.raises(DatasetError, match="missing text field 'caption'"):
        load_samples("w", spec)


def test_builtin_digits_is_deterministic_and_honest():
    a = load_samples("d", dict(PAIRED, n_samples=None))
    b = load_samples("d", dict(PAIRED, n_samples=None))
    assert a.ids == b.ids and a.fingerprint() == b.fingerprint()
    assert len(a) > 1700  # distinct (image, caption) pairs of the 1 797 digits
    assert len(set(a.texts)) <= 90
    assert load_image(a.images[0]).size == (8, 8)
    text_only = load_samples("d", dict(PAIRED, modality="text", n_samples=None))
    assert len(text_only) == len(set(a.texts))  # duplicate captions dropped for text-only use


def base_config():
    return {
        "datasets": {"digits": {"source": "builtin", "name": "digits", "modality": "vision"}},
        "models": {"vit": {"source": "random", "architecture": "vit", "modality": "vision"}},
    }


def test_schema_accepts_vision_models_without_tokenizer():
    config = validate_config(base_config())
    assert config["models"]["vit"]["modality"] == "vision"
    assert config["extract"]["token_budget"] == "auto" and config["extract"]["compile"] is False
    resolve(config)
    text = base_config()
    text["models"]["vit"]["modality"] = "text"
    with pytest.raises(ConfigError, match="models.vit"):
        validate_config(text)
    bad = base_config()
    bad["datasets"]["digits"]["modality"] = "audio"
    with pytest.raises(ConfigError, match="datasets.digits.modality"):
        validate_config(bad)
    proc = base_config()
    proc["models"]["vit"]["image_processor"] = {"size": {"height": 32, "width": 32}}
    validate_config(proc)


def test_paired_datasets_serve_text_and_vision_models():
    config = validate_config({
        "datasets": {"p": {"source": "builtin", "name": "digits", "modality": "paired"}},
        "models": {"t": {"source": "random", "architecture": "bert", "tokenizer": "x"}},
    })
    from repbench.config import model_instances

    assert datasets_for(model_instances(config)[0], config) == ["p"]


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path, monkeypatch):
    # their data files are not shipped, so resolve's pre-job data check (path exists, n_samples) is left out here
    monkeypatch.setattr("repbench.data.check_dataset", lambda name, spec: 0)
    config, instances = load_config(path)
    assert instances
    for inst in instances:
        assert datasets_for(inst, config)
