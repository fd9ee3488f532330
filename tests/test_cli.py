"""The command line for people: ``repbench validate CONFIG`` and ``repbench info STORE`` (via ``cli.main``)."""

import ast
import re

import numpy as np
import pytest
import yaml
from conftest import ROOT

from repbench import __version__, store
from repbench.cli import main

TEST_CONFIG = ROOT / "tests" / "config" / "config.yaml"


def test_validate_lists_every_model_instance_with_its_datasets(capsys):
    assert main(["validate", str(TEST_CONFIG)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # tests/config/config.yaml: one dataset (docs); three single models and tiny-lm trained to steps 0, 2, 4, 8
    # (one instance per checkpoint, named MODEL@stepN)
    assert out.splitlines() == [
        "minilm: docs",
        "tiny-bert: docs",
        "tiny-neox: docs",
        "tiny-lm@step0: docs",
        "tiny-lm@step2: docs",
        "tiny-lm@step4: docs",
        "tiny-lm@step8: docs",
    ]


def test_validate_shows_a_models_own_datasets(tmp_path, capsys):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["datasets"]["more"] = dict(config["datasets"]["docs"], seed=2)
    config["models"]["tiny-bert"]["datasets"] = ["more"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["tiny-bert"] == "more"
    assert lines["minilm"] == "docs, more"


@pytest.mark.parametrize(("edit", "named"), [
    (lambda c: c["models"]["tiny-bert"].update(source="nowhere"), "models.tiny-bert.source"),
    (lambda c: c["extract"].update(poolings=["mean", "median"]), "extract.poolings"),
    (lambda c: c.update(metircs={}), "metircs"),
])
def test_invalid_config_exits_2_and_names_the_key(tmp_path, capsys, edit, named):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert named in err and err.startswith("error:")


def test_info_prints_dims_model_and_dataset(tmp_path, capsys):
    path = tmp_path / "docs" / "tiny.zarr"
    store.create_activation_store(path, sample_ids=[f"id{i}" for i in range(7)], n_layers=3, n_features=5,
                                  poolings=["mean", "last"], chunk_samples=4, dtype="float32",
                                  attrs={"model": "tiny", "dataset": "docs", "config_hash": "abc123"})
    store.zarr.open_group(str(path), mode="r+")["mean"][...] = np.ones((3, 7, 5), dtype=np.float32)
    store.finalize_group(path, {"n_samples": 7})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    dims_line = next(line for line in out.splitlines() if line.startswith("Dimensions"))
    assert dict(re.findall(r"(\w+): (\d+)", dims_line)) == {"layer": "3", "sample": "7", "feature": "5"}
    assert "mean" in out and "last" in out
    summary = ast.literal_eval(out.strip().splitlines()[-1])
    assert summary == {"model": "tiny", "dataset": "docs", "n_samples": 7, "config_hash": "abc123"}


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"repbench {__version__}"
