"""Stage ``neighbors`` (workflow/rules/neighbors.smk): exact k-NN graphs of every layer of one model in one space."""


def neighbors(job) -> None:
    """``results/neighbors/{dataset}/{space}/{model}.zarr``: one group per pooling with ``indices`` int32 and
    ``distances`` float32 ``(layer, sample, neighbor)``; cosine graphs see the layer clipped at
    ``neighbors.clip_quantile`` when set (at the PRH code's per-model threshold when ``clip_mode`` is ``prh``),
    euclidean graphs the raw vectors.

    Streaming and resumable: each layer's graph goes into a partial store
    (``results/.partial/neighbors/{dataset}/{space}/{model}.{key}/``) as soon as it is computed, so memory holds one
    layer, and a killed job restarts at the first layer not yet written (``progress.json``); the finished store is
    moved into place atomically.
    """
    import shutil
    from pathlib import Path

    from tqdm.auto import tqdm

    from repbench import __version__, store
    from repbench.config import fingerprint
    from repbench.neighbors import knn
    from repbench.preprocess import preprocess, prh_threshold
    from repbench.stages import trim_heap

    acts, options, space = job.input.activations, job.params.options, job.wildcards.space
    attrs = store.activation_attrs(acts)
    device = None if options["device"] == "auto" else options["device"]
    clip = options.get("clip_quantile") if space == "cosine" else None
    poolings = list(job.params.poolings)
    arrays = {p: store.pooling_array(acts, p) for p in poolings}
    n_layers, n = next(iter(arrays.values())).shape[:2]
    kmax = options["kmax"]
    key = fingerprint({"activations": attrs["config_hash"], "options": options, "space": space, "poolings": poolings,
                       "shape": [n_layers, n, kmax]})
    partial_dir = Path(job.params.partial_root) / f"{attrs['model']}.{key}"
    partial, progress_file = partial_dir / "store.zarr", partial_dir / "progress.json"
    done = set(store.read_json(progress_file, {"layers": []})["layers"])
    if not done or not partial.exists():
        done = set()
        partial_dir.mkdir(parents=True, exist_ok=True)
        shapes = {"indices": ((n_layers, n, kmax), "int32"), "distances": ((n_layers, n, kmax), "float32")}
        store.create_layer_store(partial, {p: shapes for p in poolings}, ("layer", "sample", "neighbor"))
        store.write_json_atomic(progress_file, {"layers": []})
    elif done:
        print(f"neighbors: resuming, {len(done)} of {n_layers * len(poolings)} layer graphs already written", flush=True)
    root = store.zarr.open_group(str(partial), mode="r+")
    for pooling in poolings:
        arr = arrays[pooling]
        todo = [layer for layer in range(n_layers) if f"{pooling}/{layer}" not in done]
        threshold = prh_threshold(arr, clip) if todo and clip and options.get("clip_mode") == "prh" else None
        for layer in tqdm(todo, desc=f"neighbors {pooling}-{space}", mininterval=2):
            X = arr[layer].compute()
            trim_heap()  # the chunks the layer was assembled from
            try:
                X = preprocess(X, clip, threshold) if clip else X
                indices, distances = knn(X, kmax, space=space, device=device, budget_bytes=options["budget_mb"] * 2**20)
            except ValueError as exc:
                raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None
            root[pooling]["indices"][layer] = indices
            root[pooling]["distances"][layer] = distances
            done.add(f"{pooling}/{layer}")
            store.write_json_atomic(progress_file, {"layers": sorted(done)})
            del X, indices, distances
            trim_heap()  # the search's freed blocks leave the resident set before the next layer is read
    provenance = {"model": attrs["model"], "dataset": attrs["dataset"], "activations_hash": attrs["config_hash"],
                  "space": space, "kmax": kmax, "repbench_version": __version__,
                  "clip_quantile": clip if clip else "none",
                  "clip_mode": options.get("clip_mode", "layer") if clip else "none",
                  "tie_break": "ascending distance, then lower index; self excluded"}
    store.finish_layer_store(partial, job.output[0], provenance)
    shutil.rmtree(partial_dir, ignore_errors=True)


if __name__ == "__main__":  # run by the rules of workflow/rules/neighbors.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    functions = {"neighbors": neighbors}
    run_job(snakemake, functions, torch_rules=("neighbors",))  # noqa: F821 (injected by Snakemake)
