"""Stage ``neighbors`` (workflow/rules/neighbors.smk): exact k-NN graphs of every layer of one model in one space."""


def neighbors(job) -> None:
    """``results/neighbors/{dataset}/{space}/{model}.zarr``: one group per pooling with ``indices`` int32 and
    ``distances`` float32 ``(layer, sample, neighbor)``; cosine graphs see the layer clipped at
    ``neighbors.clip_quantile`` when set (at the PRH code's per-model threshold when ``clip_mode`` is ``prh``),
    euclidean graphs the raw vectors."""
    import numpy as np
    from tqdm.auto import tqdm

    from repbench import __version__, store
    from repbench.neighbors import knn
    from repbench.preprocess import preprocess, prh_threshold

    acts, options, space = job.input.activations, job.params.options, job.wildcards.space
    attrs = store.activation_attrs(acts)
    device = None if options["device"] == "auto" else options["device"]
    clip = options.get("clip_quantile") if space == "cosine" else None
    groups = {}
    for pooling in job.params.poolings:
        arr = store.pooling_array(acts, pooling)
        threshold = prh_threshold(arr, clip) if clip and options.get("clip_mode") == "prh" else None
        idx, dist = [], []
        for layer in tqdm(range(arr.shape[0]), desc=f"neighbors {pooling}-{space}", mininterval=2):
            X = arr[layer].compute()
            try:
                X = preprocess(X, clip, threshold) if clip else X
                i, d = knn(X, options["kmax"], space=space, device=device,
                           budget_bytes=options["budget_mb"] * 2**20)
            except ValueError as exc:
                raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None
            idx.append(i)
            dist.append(d)
        groups[pooling] = {"indices": np.stack(idx), "distances": np.stack(dist)}
    provenance = {"model": attrs["model"], "dataset": attrs["dataset"], "activations_hash": attrs["config_hash"],
                  "space": space, "kmax": options["kmax"], "repbench_version": __version__,
                  "clip_quantile": clip if clip else "none",
                  "clip_mode": options.get("clip_mode", "layer") if clip else "none",
                  "tie_break": "ascending distance, then lower index; self excluded"}
    store.write_layer_arrays(job.output[0], groups, ("layer", "sample", "neighbor"), provenance)


if __name__ == "__main__":  # run by the rules of workflow/rules/neighbors.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    functions = {"neighbors": neighbors}
    run_job(snakemake, functions, torch_rules=("neighbors",))  # noqa: F821 (injected by Snakemake)
