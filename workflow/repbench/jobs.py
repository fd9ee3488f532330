"""Jobs: what each job used.

The ``jobs`` rule gathers every job's ``benchmark:`` TSV (wall seconds, peak RSS, CPU time, I/O) and the
provenance header of its log (host, Slurm job id, GPU) into ``results/tables/jobs.csv``, and
``results/figures/jobs.{png,pdf}``: where the time went per stage. What jobs *ask* for is estimated by
:mod:`repbench.resources`.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

JOB_COLUMNS = ["stage", "wildcards", "dataset", "model", "seconds", "cpu_seconds", "mean_load", "max_rss_mb",
               "max_uss_mb", "io_in_mb", "io_out_mb", "threads", "mem_mb_requested", "runtime_min_requested",
               "host", "slurm_job_id", "gpu", "benchmark"]
_WILDCARD = re.compile(r"\{\s*(\w+)\s*(?:,((?:[^{}]|\{[^{}]*\})*))?\}")


def pattern_regex(pattern: str) -> re.Pattern:
    """A regex for a Snakemake file pattern: ``{name}`` matches within one path component, ``{name,regex}`` its
    constraint; a repeated wildcard must repeat its value."""
    out, pos, seen = [], 0, set()
    for m in _WILDCARD.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        name, constraint = m.group(1), m.group(2)
        if name in seen:
            out.append(f"(?P={name})")
        else:
            seen.add(name)
            out.append(f"(?P<{name}>{constraint or '[^/]+'})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


def _literal_length(pattern: str) -> int:
    return len(_WILDCARD.sub("", pattern))


def find_records(patterns: dict[str, str], root: str | Path = ".") -> list[tuple[str, dict, str]]:
    """``(rule, wildcards, path relative to root)`` of every file under ``root`` matching a rule's pattern.

    A file matching several patterns (``figure/{dataset}/{family}.tsv`` and ``figure/{dataset}/spectral_steps.tsv``)
    belongs to the most specific one (the most literal characters), as Snakemake's own wildcard constraints decide.
    """
    root = Path(root)
    compiled = sorted(((rule, pattern_regex(p), p) for rule, p in patterns.items() if p),
                      key=lambda item: -_literal_length(item[2]))
    tops = set()
    for _, _, pattern in compiled:
        prefix = pattern.split("{", 1)[0]
        tops.add(prefix.rsplit("/", 1)[0] if "/" in prefix else ".")
    files = set()
    for top in tops:
        if (root / top).is_dir():
            for dirpath, _, names in os.walk(root / top):
                files.update((Path(dirpath) / n).relative_to(root).as_posix() for n in names)
    found = []
    for rel in sorted(files):
        for rule, regex, _ in compiled:
            m = regex.match(rel)
            if m:
                found.append((rule, m.groupdict(), rel))
                break
    return found


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_benchmark(path: Path) -> dict:
    """The first record of a Snakemake benchmark TSV (plain or ``--benchmark-extended``)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if len(rows) < 2:
        return {}
    header, row = rows[0], rows[1]
    rec = dict(zip(header, row)) if len(row) == len(header) else dict(zip(header[:10], row[:10]))
    out = {
        "seconds": _number(rec.get("s")),
        "cpu_seconds": _number(rec.get("cpu_time")),
        "mean_load": _number(rec.get("mean_load")),
        "max_rss_mb": _number(rec.get("max_rss")),
        "max_uss_mb": _number(rec.get("max_uss")),
        "io_in_mb": _number(rec.get("io_in")),
        "io_out_mb": _number(rec.get("io_out")),
        "threads": _number(rec.get("threads")),
    }
    resources = rec.get("resources")
    if resources and resources.startswith("{"):
        import ast

        try:
            res = ast.literal_eval(resources)
        except (ValueError, SyntaxError):
            res = {}
        out["mem_mb_requested"] = _number(res.get("mem_mb"))
        out["runtime_min_requested"] = _number(res.get("runtime"))
        if math.isnan(out["threads"]):
            out["threads"] = _number(res.get("_cores"))
    return out


_HEADER_KEYS = {"host": "host", "slurm_job_id": "slurm_job_id", "gpu": "gpu"}


def read_log_header(path: Path) -> dict:
    """Host, Slurm job id and GPU from the provenance header of a job's log (the last run's, logs append)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    start = text.rfind("== repbench rule")
    if start < 0:
        return {}
    out = {}
    for line in text[start:].splitlines()[1:8]:
        key, _, value = line.partition(":")
        if key in _HEADER_KEYS and key not in out:
            value = value.strip()
            out[_HEADER_KEYS[key]] = value.split("  ")[0] if key == "gpu" else value
    return out


def jobs_table(records: dict[str, list[str]], scope: dict[str, list[str]], root: str | Path = ".") -> "pd.DataFrame":
    """One row per job of the current config that left a benchmark record.

    ``records``: ``{rule: [benchmark pattern, log pattern]}`` in pipeline order; ``scope``: ``{wildcard: values}``
    of the current config, so records of models or datasets since removed from it are left out.
    """
    import pandas as pd

    order = {rule: i for i, rule in enumerate(records)}
    allowed = {k: set(v) for k, v in scope.items()}
    rows = []
    root = Path(root)
    for rule, wildcards, rel in find_records({r: p[0] for r, p in records.items()}, root):
        if any(k in allowed and v not in allowed[k] for k, v in wildcards.items()):
            continue
        row = {"stage": rule, "wildcards": ",".join(f"{k}={v}" for k, v in sorted(wildcards.items())),
               "dataset": wildcards.get("dataset", ""),
               "model": wildcards.get("model") or ("__".join((wildcards["a"], wildcards["b"]))
                                                   if "a" in wildcards and "b" in wildcards else ""),
               "benchmark": rel}
        row.update(read_benchmark(root / rel))
        log_pattern = records[rule][1] if len(records[rule]) > 1 else ""
        if log_pattern:
            try:
                row.update(read_log_header(root / _WILDCARD.sub(lambda m: wildcards[m.group(1)], log_pattern)))
            except KeyError:  # the log names a wildcard its benchmark does not
                pass
        rows.append(row)
    frame = pd.DataFrame(rows, columns=JOB_COLUMNS)
    frame["_order"] = frame["stage"].map(order)
    frame = frame.sort_values(["_order", "wildcards"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return frame


def stage_summary(frame) -> "pd.DataFrame":
    """Per stage: jobs, total/median/max seconds, peak RSS, in pipeline (table) order."""
    if frame.empty:
        import pandas as pd

        return pd.DataFrame(columns=["stage", "jobs", "total_s", "median_s", "max_s", "max_rss_mb"])
    g = frame.groupby("stage", sort=False)
    return g.agg(jobs=("seconds", "size"), total_s=("seconds", "sum"), median_s=("seconds", "median"),
                 max_s=("seconds", "max"), max_rss_mb=("max_rss_mb", "max")).reset_index()


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def jobs_figure(frame, title: str = "where the time went"):
    """Left: total wall time per stage (bars, with job count and median); right: peak memory of each job."""
    import numpy as np

    from .figures import STYLE, plt

    summary = stage_summary(frame)
    with plt.rc_context(STYLE):
        height = 1.2 + 0.32 * max(3, len(summary))
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9.5, height), layout="constrained", sharey=True)
        if summary.empty:
            ax_t.text(0.5, 0.5, "no benchmark records", ha="center", va="center", transform=ax_t.transAxes)
        y = np.arange(len(summary))
        total = float(summary["total_s"].sum()) if len(summary) else 0.0
        ax_t.barh(y, summary["total_s"], color="#4477aa")
        for yi, (_, row) in zip(y, summary.iterrows()):
            ax_t.text(row["total_s"], yi, f"  {int(row['jobs'])} × median {_duration(row['median_s'])}",
                      va="center", fontsize=7)
        ax_t.set_yticks(y, summary["stage"])
        ax_t.invert_yaxis()
        ax_t.set_xlabel("total wall time (s, summed over jobs)")
        ax_t.set_xlim(0, max(1.0, float(summary["total_s"].max()) * 1.6) if len(summary) else 1.0)
        ax_t.set_title(f"{len(frame)} jobs, {_duration(total)} of job time")
        index = {stage: i for i, stage in enumerate(summary["stage"])}
        rss = frame.dropna(subset=["max_rss_mb"])
        if len(rss):
            jitter = (np.arange(len(rss)) % 7 - 3) * 0.05  # deterministic spread
            ax_m.scatter(rss["max_rss_mb"], rss["stage"].map(index) + jitter, s=10, alpha=0.7, color="#ee6677",
                         label="peak RSS")
            req = frame.dropna(subset=["mem_mb_requested"]).drop_duplicates("stage")
            if len(req):
                ax_m.scatter(req["mem_mb_requested"], req["stage"].map(index), marker="|", s=120, color="black",
                             label="requested (first job)")
            ax_m.set_xscale("log")
            ax_m.legend(fontsize=7, loc="lower right")
        ax_m.set_xlabel("memory per job (MB)")
        fig.suptitle(title)
    return fig
