"""Secure model-loading defaults: safetensors only, ``trust_remote_code`` explicit everywhere, no unsafe torch.load.

Tiny random-init models are built from configs and saved to ``tmp_path``; nothing is downloaded.
"""

import re

import pytest
import torch
import transformers
from conftest import ROOT, TINY_BERT
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer, ViTConfig, ViTImageProcessor, ViTModel

from repbench.models import ModelLoadError, build_random, load_model, package_dir


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny random BERT in save_pretrained layout (safetensors) with its tokenizer beside it."""
    path = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(str(package_dir(TINY_BERT["tokenizer"].split(":", 1)[1])))
    model = build_random(TINY_BERT, vocab_size=len(tok))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def pickle_bert_dir(tmp_path_factory, bert_dir):
    """The same tiny BERT with only pickle weights (``pytorch_model.bin``).

    ``save_pretrained(dir, safe_serialization=False)`` is asked for first; transformers 5 writes safetensors
    regardless, so the state dict is then pickled by hand into the file older checkpoints ship.
    """
    _, model = bert_dir
    path = tmp_path_factory.mktemp("tiny_bert_pickle")
    model.save_pretrained(path, safe_serialization=False)
    for f in path.glob("*.safetensors"):
        f.unlink()
    if not (path / "pytorch_model.bin").exists():
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(str(bert_dir[0])).save_pretrained(path)
    assert not list(path.glob("*.safetensors")) and (path / "pytorch_model.bin").is_file()
    return path, model


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    """A tiny random ViT with an image processor saved beside it."""
    path = tmp_path_factory.mktemp("tiny_vit")
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    torch.manual_seed(0)
    ViTModel(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------- safetensors
def test_use_safetensors_defaults_to_true_in_the_schema():
    import yaml

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    model = schema["$defs"]["model"]["properties"]
    assert model["use_safetensors"]["default"] is True
    assert model["trust_remote_code"]["default"] is False


def test_pickle_only_checkpoint_is_refused_by_default(pickle_bert_dir):
    path, _ = pickle_bert_dir
    with pytest.raises(ModelLoadError) as err:
        load_model("tiny-pickle", {"source": "local", "path": str(path)})
    message = str(err.value)
    assert "'tiny-pickle'" in message  # names the model
    assert "pytorch_model.bin" in message  # names what it found
    assert "use_safetensors: false" in message  # says how to proceed
    assert "trust" in message


def test_pickle_only_checkpoint_loads_with_use_safetensors_false(pickle_bert_dir):
    path, model = pickle_bert_dir
    loaded = load_model("tiny-pickle", {"source": "local", "path": str(path), "use_safetensors": False})
    assert same_weights(loaded.model, model)


def test_safetensors_checkpoint_loads_by_default(bert_dir):
    path, model = bert_dir
    loaded = load_model("tiny-local", {"source": "local", "path": str(path)})
    assert same_weights(loaded.model, model)
    assert loaded.tokenizer is not None


# -------------------------------------------------------------------------------------- trust_remote_code
@pytest.fixture
def recorded(monkeypatch):
    """Every ``from_pretrained`` call of the Auto classes (repbench's and transformers' own inner ones), with the
    class name and keyword arguments; the real method still runs."""
    calls = []
    for cls in (AutoModel, AutoConfig, AutoTokenizer, AutoImageProcessor):
        real = cls.from_pretrained  # bound to cls

        def wrapper(*args, _real=real, _name=cls.__name__, **kwargs):
            calls.append((_name, dict(kwargs)))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", wrapper)
    return calls


def trust_flags(calls) -> dict[str, list]:
    out: dict[str, list] = {}
    for name, kwargs in calls:
        out.setdefault(name, []).append(kwargs.get("trust_remote_code", "MISSING"))
    return out


@pytest.mark.parametrize("trust", [None, False, True])
def test_trust_remote_code_reaches_every_text_call(bert_dir, recorded, trust):
    path, _ = bert_dir
    spec = {"source": "local", "path": str(path)} | ({} if trust is None else {"trust_remote_code": trust})
    load_model("tiny-local", spec)
    flags = trust_flags(recorded)
    assert {"AutoModel", "AutoConfig", "AutoTokenizer"} <= set(flags), flags
    expected = bool(trust)
    assert all(v is expected for vs in flags.values() for v in vs), flags


@pytest.mark.parametrize("trust", [None, True])
def test_trust_remote_code_reaches_every_vision_call(vit_dir, recorded, trust):
    spec = {"source": "local", "path": str(vit_dir), "modality": "vision"}
    spec |= {} if trust is None else {"trust_remote_code": trust}
    loaded = load_model("tiny-vit", spec)
    assert isinstance(loaded.image_processor, transformers.BaseImageProcessor)
    flags = trust_flags(recorded)
    assert {"AutoModel", "AutoConfig", "AutoImageProcessor"} <= set(flags), flags
    expected = bool(trust)
    assert all(v is expected for vs in flags.values() for v in vs), flags


# ----------------------------------------------------------------------------------------------- torch.load
def unsafe_torch_loads(source: str) -> list[str]:
    """Each ``torch.load(...)`` call in ``source`` (up to its closing parenthesis) without ``weights_only=True``."""
    calls = []
    for match in re.finditer(r"torch\.load\(", source):
        depth, end = 1, match.end()
        while depth and end < len(source):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        call = source[match.start() : end]
        if not re.search(r"weights_only\s*=\s*True", call):
            calls.append(call)
    return calls


def test_unsafe_torch_load_detector():
    assert unsafe_torch_loads("x = torch.load(path)") == ["torch.load(path)"]
    assert unsafe_torch_loads("torch.load(f(p), map_location='cpu', weights_only=False)")
    assert unsafe_torch_loads("torch.load(\n    open(p, 'rb'),\n    weights_only=True,\n)") == []


def test_package_never_calls_torch_load_without_weights_only():
    offenders = {}
    for path in sorted((ROOT / "workflow").rglob("*.py")):
        found = unsafe_torch_loads(path.read_text())
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, f"torch.load without weights_only=True: {offenders}"
