"""Stage ``invariance`` (workflow/rules/invariance.smk): InfoNCE, LiDAR and DiME per layer over augmented views."""


def invariance(job) -> None:
    """``results/metrics/{NAME}.views/{model}/invariance.csv`` from a views dataset's activation store."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from repbench import store, tables
    from repbench.metrics import invariance as family

    acts = job.input.activations
    attrs = store.activation_attrs(acts)
    group = store.zarr.open_group(str(acts), mode="r")
    if "view_of" not in group.array_keys():
        raise ValueError(f"{acts} is not a views store (no view_of column): the invariance family reads the views "
                         "datasets NAME.views of datasets with `views`")
    view_of = store.read_array(acts, "view_of").tolist()
    view = store.read_array(acts, "view")
    options = dict(job.params.options)
    requested = options.pop("device")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("metrics.invariance.device is 'cuda' but this job has no CUDA device")
    device = "cuda" if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()) else "cpu"
    arrays = {p: store.pooling_array(acts, p) for p in job.params.poolings}
    n_layers = next(iter(arrays.values())).shape[0]
    bar = tqdm(total=n_layers * len(arrays), desc=f"invariance {job.wildcards.dataset}/{job.wildcards.model}")

    def rows(pooling, layer):
        views, _ = family.grouped_views(np.asarray(arrays[pooling][layer]), view_of, view)
        try:
            out = family.layer_metrics(views, options, device=device)
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None
        bar.update()
        return out

    identity = tables.model_identity(attrs, job.params.info)
    frame = tables.layer_table(n_layers, job.params.poolings, rows, identity)
    bar.close()
    store.write_csv_atomic(frame, job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/invariance.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"invariance": invariance}, torch_rules=("invariance",))  # noqa: F821 (injected by Snakemake)
