"""Stage ``figures`` (workflow/rules/figures.smk): tables across models, and every figure, drawn from tables only."""


def _select(frame, dataset: str, pooling: str):
    """The rows of one dataset and pooling."""
    return frame[(frame["dataset"] == dataset) & (frame["pooling"] == pooling)]


def _rows(frame, dataset: str, pooling: str, source: str):
    """The rows of one dataset and pooling, which must exist."""
    sub = _select(frame, dataset, pooling)
    if sub.empty:
        raise ValueError(f"{source} has no rows for dataset {dataset!r} and pooling {pooling!r}")
    return sub


def table(job) -> None:
    """``results/tables/{family}.csv``: the per-model tables of one family, concatenated in a stable order."""
    from repbench import store, tables

    store.write_csv_atomic(tables.concat_tables(list(job.input)), job.output[0])


def figure(job) -> None:
    """Metric vs relative depth for one family on one dataset, one line per model."""
    import pandas as pd

    from repbench import figures

    from repbench import registry

    family, dataset, pooling = job.wildcards.family, job.wildcards.dataset, job.params.pooling
    if family in registry.TOKEN_FAMILIES:
        pooling = "tokens"  # token-level metrics read every token, not a pooling
    sub = _rows(pd.read_csv(job.input[0]), dataset, pooling, job.input[0])
    title = f"{family} · {dataset} · {pooling} pooling"
    if family == "intrinsic_dim":
        from repbench.figures.intrinsic_dim import depth_figure

        fig = depth_figure(sub, gride_n1=job.params.options["gride_n1"], title=title)
    elif family == "probes":
        from repbench.figures.labels import probe_figure

        fig = probe_figure(sub, title=title)
    elif family in ("clusters", "collapse"):
        from repbench.figures.labels import per_layer_means

        sub = per_layer_means(sub)
        fig = figures.depth_curves(sub, sorted(sub["metric"].unique()), title=title)
    else:
        fig = figures.depth_curves(sub, sorted(sub["metric"].unique()), title=title)
    figures.save(fig, list(job.output), dpi=job.params.dpi)


def figure_label_steps(job) -> None:
    """Concept depth, best probe score and last-layer NC1 against training step."""
    import pandas as pd

    from repbench import figures
    from repbench.figures.labels import steps_figure

    dataset, pooling = job.wildcards.dataset, job.params.pooling
    depth = _rows(pd.read_csv(job.input.depth), dataset, pooling, job.input.depth)
    collapse = _rows(pd.read_csv(job.input.collapse), dataset, pooling, job.input.collapse)
    fig = steps_figure(depth, collapse, title=f"labels over training · {dataset} · {pooling} pooling")
    figures.save(fig, list(job.output), dpi=job.params.dpi)


def figure_directions(job) -> None:
    """Cosine of concept directions between instances that share a space, by relative depth."""
    import pandas as pd

    from repbench import figures
    from repbench.figures.labels import directions_figure

    dataset, pooling = job.wildcards.dataset, job.params.pooling
    sub = _rows(pd.read_csv(job.input[0]), dataset, pooling, job.input[0])
    fig = directions_figure(sub, title=f"concept directions · {dataset} · {pooling} pooling")
    figures.save(fig, list(job.output), dpi=job.params.dpi)


def figure_id_scales(job) -> None:
    """GRIDE ID vs scale at the chosen relative depths, and the local-ID distribution per layer."""
    import pandas as pd

    from repbench import figures
    from repbench.figures.intrinsic_dim import local_id_figure, scale_figure

    dataset, pooling = job.wildcards.dataset, job.params.pooling
    table_ = _select(pd.read_csv(job.input[0]), dataset, pooling)
    half = len(job.output) // 2
    figures.save(scale_figure(table_, job.params.options["scale_layers"],
                              title=f"GRIDE ID vs scale · {dataset} · {pooling}"), list(job.output)[:half],
                 dpi=job.params.dpi)
    figures.save(local_id_figure(table_, title=f"local ID per layer · {dataset} · {pooling}"), list(job.output)[half:],
                 dpi=job.params.dpi)


def figure_spectral_steps(job) -> None:
    """RankMe (σ) and α-ReQ against training step, phases shaded."""
    import pandas as pd

    from repbench import figures
    from repbench.figures.spectral import steps_figure

    dataset, pooling = job.wildcards.dataset, job.params.pooling
    table_ = _select(pd.read_csv(job.input.table), dataset, pooling)
    phases = _select(pd.read_csv(job.input.phases), dataset, pooling)  # empty when no model has ≥ 3 steps
    fig = steps_figure(table_, phases, job.params.layer, title=f"spectral phases · {dataset} · {pooling} pooling")
    figures.save(fig, list(job.output), dpi=job.params.dpi)


def figure_eigenspectrum(job) -> None:
    """Eigenspectra at the chosen relative depths (from ``tables/spectra.csv``) with the fitted α-ReQ power law
    (slope from ``tables/spectral.csv``, drawn over the fit's rank window ``metrics.spectral.alpha_req``)."""
    import pandas as pd

    from repbench import figures, tables
    from repbench.figures.spectral import eigenspectrum_figure

    dataset, pooling = job.wildcards.dataset, job.params.pooling
    spectra = tables.eigenvalue_matrices(_rows(pd.read_csv(job.input.spectra), dataset, pooling, job.input.spectra))
    spectral = _select(pd.read_csv(job.input.table), dataset, pooling)
    alphas = spectral[spectral["metric"] == "alpha_req"]
    window = job.params.alpha_req
    fig = eigenspectrum_figure(spectra, alphas, job.params.options["eigenspectrum_layers"], window["rank_min"],
                               window["rank_max"], title=f"eigenspectra · {dataset} · {pooling} pooling")
    figures.save(fig, list(job.output), dpi=job.params.dpi)


def figure_alignment(job) -> None:
    """The PRH plots: model × model heatmap (clustered), layer × layer grid, alignment vs model size."""
    import pandas as pd

    from repbench import figures, tables
    from repbench.figures import alignment as fa

    dataset, pooling = job.wildcards.dataset, job.params.pooling
    metric, summary = job.params.options["metric"], job.params.options["summary"]
    table_ = _select(pd.read_csv(job.input.table), dataset, pooling)
    table_ = table_[table_["metric"] == metric]
    layers = _rows(pd.read_csv(job.input.layers), dataset, pooling, job.input.layers)
    outputs, dpi = list(job.output), job.params.dpi
    n = len(outputs) // 3
    title = f"{metric} ({summary}) · {dataset} · {pooling}"
    figures.save(fa.model_heatmap(table_, summary, title=title), outputs[:n], dpi=dpi)
    figures.save(fa.layer_grid(tables.layer_matrices(layers, metric),
                               title=f"{metric} layer × layer · {dataset} · {pooling}"), outputs[n: 2 * n], dpi=dpi)
    figures.save(fa.size_plot(table_, summary, title=title), outputs[2 * n:], dpi=dpi)


if __name__ == "__main__":  # run by the rules of workflow/rules/figures.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"table": table, "figure": figure, "figure_id_scales": figure_id_scales,  # noqa: F821
                        "figure_spectral_steps": figure_spectral_steps, "figure_eigenspectrum": figure_eigenspectrum,
                        "figure_alignment": figure_alignment, "figure_label_steps": figure_label_steps,
                        "figure_directions": figure_directions})
