"""Docs, schema, environments and packaging stay in sync."""

import re
import tomllib

import yaml
from conftest import ROOT


def schema_keys(schema: dict, prefix: str = "") -> set[str]:
    """Dotted key paths of every property in the schema (through $defs references)."""
    defs = schema.get("$defs", {})
    keys = set()

    def walk(node: dict, path: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        for name, sub in node.get("properties", {}).items():
            full = f"{path}.{name}" if path else name
            keys.add(full)
            walk(sub, full)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.NAME")

    walk(schema, prefix)
    return keys


def test_every_schema_key_is_documented():
    """Each key path, or a suffix of it (``geometry.seed`` for ``metrics.geometry.seed``), is named in the docs."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    doc = re.sub(r"```.*?```", "", (ROOT / "config" / "README.md").read_text(), flags=re.S)  # drop code blocks
    tokens = set(re.findall(r"`([^`]+)`", doc))

    def documented(key: str) -> bool:
        parts = key.split(".")
        suffixes = {".".join(parts[i:]) for i in range(len(parts))} - {"NAME"}
        return any(t == s or t.startswith(s + ".") for t in tokens for s in suffixes)

    missing = [k for k in sorted(schema_keys(schema)) if not documented(k)]
    assert not missing, f"keys not documented in config/README.md: {missing}"


def test_schema_defaults_match_the_documentation():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    doc = (ROOT / "config" / "README.md").read_text()
    for name, spec in schema["$defs"]["model"]["properties"].items():
        if "default" in spec and not isinstance(spec["default"], dict):
            default = str(spec["default"]).lower()
            row = re.search(rf"^\| `{name}` \| (.*?) \|", doc, re.M)
            assert row and default in row.group(1).lower(), (name, default)


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


CONDA_NAMES = {"pytorch": "torch"}


def conda_names(path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    names = {re.split(r"[<>=! ]", d, maxsplit=1)[0] for d in deps if isinstance(d, str)}
    return {CONDA_NAMES.get(n, n) for n in names} - {"python", "pip"}


def test_conda_envs_mirror_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert conda_names(ROOT / "envs" / "repbench.yaml") == requirement_names(project["dependencies"])
    assert conda_names(ROOT / "envs" / "test.yaml") == requirement_names(project["optional-dependencies"]["test"])


def test_every_rule_has_log_benchmark_threads_resources():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule in re.split(r"^rule ", text, flags=re.M)[1:]:
            name = rule.split(":")[0]
            for directive in ("log:", "benchmark:", "threads:", "resources:", "conda:"):
                assert directive in rule, f"rule {name} in {smk.name} lacks {directive}"


def test_snakefmt_and_lint_are_clean():
    import subprocess
    import sys

    bin_dir = __import__("pathlib").Path(sys.executable).parent
    fmt = subprocess.run([str(bin_dir / "snakefmt"), "--check", "Snakefile", "workflow/rules"], cwd=ROOT,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr[-2000:]
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, (lint.stdout + lint.stderr)[-3000:]


def import_skips(source: str) -> list[str]:
    """Places where a test file skips on an import: ``importorskip`` anywhere, ``pytest.skip``/``skipif`` in an
    ``except ImportError``/``ModuleNotFoundError`` handler, or a ``skipif`` on ``find_spec``."""
    import ast

    def name(node) -> str:
        return ast.unparse(node)

    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and name(node.func).split(".")[-1] == "importorskip":
            found.append(f"line {node.lineno}: {name(node)}")
        elif isinstance(node, ast.Call) and name(node.func).split(".")[-1] == "skipif" and "find_spec" in name(node):
            found.append(f"line {node.lineno}: {name(node)}")
        elif isinstance(node, ast.ExceptHandler) and node.type is not None and (
            {"ImportError", "ModuleNotFoundError"} & set(re.findall(r"\w+", name(node.type)))
        ):
            for sub in ast.walk(ast.Module(body=node.body, type_ignores=[])):
                if isinstance(sub, ast.Call) and name(sub.func).split(".")[-1] in ("skip", "skipif", "xfail"):
                    found.append(f"line {sub.lineno}: {name(sub)} under except {name(node.type)}")
    return found


def test_import_skip_detector():
    assert import_skips("import pytest\ntorch = pytest.importorskip('torch')\n")
    assert import_skips("from pytest import importorskip\nimportorskip('x')\n")
    assert import_skips("import pytest\ntry:\n    import x\nexcept ImportError:\n    pytest.skip('no x')\n")
    assert import_skips("import pytest\ntry:\n    import x\nexcept (OSError, ModuleNotFoundError) as e:\n"
                        "    pytest.skip(str(e), allow_module_level=True)\n")
    assert import_skips("m = pytest.mark.skipif(importlib.util.find_spec('x') is None, reason='')\n")
    assert not import_skips("import pytest\nif not gpu:\n    pytest.skip('no GPU')\n")
    assert not import_skips("try:\n    import x\nexcept ImportError:\n    pytest.fail('x is missing')\n")


def test_no_test_skips_on_an_import():
    """Declared dependencies are imported plainly: a missing one fails the run instead of hiding tests."""
    offenders = {p.name: import_skips(p.read_text()) for p in sorted((ROOT / "tests").rglob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"tests that skip on an import (import the dependency at the top instead): {offenders}"


TRACKED_TEXT = (".py", ".smk", ".md", ".yaml", ".yml", ".rst", ".toml", ".sh", ".txt")


def tracked_text_files():
    import subprocess

    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith(TRACKED_TEXT) or n in ("Snakefile",)]


def test_nothing_cites_a_file_outside_the_repository():
    """The team's internal notes are not part of the repository: no file may point a reader at them."""
    internal = [name + ".md" for name in ("METRICS", "DESIGN", "STYLE")] + ["shared" + "/"]
    hits = [f"{p.relative_to(ROOT)}: {word}" for p in tracked_text_files() for word in internal
            if p.exists() and word in p.read_text(errors="replace")]
    assert hits == []


def test_relative_links_in_the_docs_resolve():
    """Every relative Markdown link in README.md, config/README.md and docs/ points at a file of the repository."""
    docs = [ROOT / "README.md", ROOT / "config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert missing == []
    assert {p.name for p in docs} >= {"metrics.md", "design.md"}


def test_every_registered_metric_is_documented():
    from repbench import registry

    text = (ROOT / "docs" / "metrics.md").read_text()
    assert [m for m in registry.METRICS if f"`{m}`" not in text] == []


MARKER_RULES = {"pair_inputs"}


def test_every_rule_runs_the_function_of_its_stage_module():
    """workflow/rules/X.smk → script: ../repbench/stages/X.py → the function named like the rule."""
    import importlib
    from pathlib import Path

    stems = set()
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for rule in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = rule.split(":")[0]
            if name == "all":
                continue
            if name in MARKER_RULES:  # a file that marks other outputs as ready: no Python start-up per job
                assert "localrule: True" in rule and re.search(r'shell:\s*\n\s*"touch \{output\}', rule), name
                continue
            script = re.search(r"script:\s*\n\s*\"([^\"]+)\"", rule)
            assert script and script.group(1) == f"../repbench/stages/{smk.stem}.py", (smk.name, name)
            module = importlib.import_module(f"repbench.stages.{smk.stem}")
            assert "from __future__" not in Path(module.__file__).read_text()  # Snakemake prepends a preamble
            assert callable(getattr(module, name, None)), f"repbench.stages.{smk.stem} has no function {name}"
            stems.add(smk.stem)
    modules = {p.stem for p in (ROOT / "workflow" / "repbench" / "stages").glob("*.py")} - {"__init__"}
    assert modules == stems  # one stage module per rule file with rules, nothing else
