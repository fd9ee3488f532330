"""Stage ``spectra`` (workflow/rules/spectra.smk): per-layer eigenvalues of one model, and their tidy table."""


def spectra(job) -> None:
    """Per pooling and layer the spectra of :mod:`repbench.spectra`, stacked to ``(layer, rank)`` arrays."""
    import numpy as np
    from tqdm.auto import tqdm

    from repbench import __version__, store
    from repbench.spectra import SpectrumInputError, spectra_from_dask

    acts = job.input.activations
    attrs = store.activation_attrs(acts)
    groups = {}
    for pooling in job.params.poolings:
        arr = store.pooling_array(acts, pooling)
        per_layer = []
        for layer in tqdm(range(arr.shape[0]), desc=f"spectra {pooling}", mininterval=2):
            try:
                per_layer.append(spectra_from_dask(arr[layer]))
            except SpectrumInputError as exc:
                raise SpectrumInputError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}",
                                         exc.rows) from None
        groups[pooling] = {k: np.stack([s[k] for s in per_layer]) for k in per_layer[0]}
    provenance = {"model": attrs["model"], "dataset": attrs["dataset"], "activations_hash": attrs["config_hash"],
                  "repbench_version": __version__}
    store.write_layer_arrays(job.output[0], groups, ("layer", "rank"), provenance)


def spectra_table(job) -> None:
    """``results/tables/spectra.csv``: every model's covariance eigenvalues per pooling, layer and rank."""
    from repbench import store, tables

    spectra = {}
    for path in job.input:
        attrs = store.activation_attrs(path)
        for pooling in job.params.poolings:
            lam = store.read_layer_arrays(path, pooling, names=("cov_eigenvalues",))["cov_eigenvalues"]
            spectra[(attrs["dataset"], attrs["model"], pooling)] = lam
    store.write_csv_atomic(tables.spectra_table(spectra), job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/spectra.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    functions = {"spectra": spectra, "spectra_table": spectra_table}
    run_job(snakemake, functions, torch_rules=("spectra",))  # noqa: F821 (injected by Snakemake)
