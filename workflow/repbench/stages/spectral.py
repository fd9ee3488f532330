"""Stage ``spectral`` (workflow/rules/spectral.smk): spectral metrics per layer from stored spectra, and the
training phases of models with checkpoints."""


def spectral(job) -> None:
    """``results/metrics/{dataset}/{model}/spectral.csv`` from the spectra store alone (never the activations)."""
    from repbench import store, tables
    from repbench.metrics import spectral as family

    options = job.params.options
    fit_config = {"metrics": options["metrics"], "alpha_req": options["alpha_req"]}
    spectra = {p: store.read_layer_arrays(job.input.spectra, p) for p in job.params.poolings}
    n_layers = next(iter(next(iter(spectra.values())).values())).shape[0]

    def rows(pooling, layer):
        return family.layer_metrics({k: v[layer] for k, v in spectra[pooling].items()}, fit_config)

    identity = tables.model_identity(store.activation_attrs(job.input.spectra), job.params.info)
    store.write_csv_atomic(tables.layer_table(n_layers, job.params.poolings, rows, identity), job.output[0])


def phases(job) -> None:
    """``results/tables/spectral_phases.csv``: warm-up / entropy-seeking / compression-seeking segments per model."""
    import pandas as pd

    from repbench import store, tables

    p = job.params.options
    frame = tables.phase_table(pd.read_csv(job.input[0]), p["layer"], p["smooth"], p["flat_tol"])
    store.write_csv_atomic(frame, job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/spectral.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"spectral": spectral, "phases": phases})  # noqa: F821 (injected by Snakemake)
