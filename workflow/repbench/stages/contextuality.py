"""Stage ``contextuality`` (workflow/rules/contextuality.smk): Ethayarajh's contextuality and token anisotropy."""


def contextuality(job) -> None:
    """``results/metrics/{dataset}/{model}/contextuality.csv`` from the token level of one activation store."""
    import numpy as np
    from tqdm import tqdm

    from repbench import store, tables
    from repbench.metrics import contextuality as family

    acts = job.input.activations
    attrs = store.activation_attrs(acts)
    layers = store.token_layers(acts)
    offsets = store.read_array(acts, "token_offsets")
    word, token_id = store.read_array(acts, "word"), store.read_array(acts, "token_id")
    keep = ~store.read_array(acts, "token_prefix")  # a vision model's CLS/register tokens are not patches
    if not keep.all():
        offsets = np.concatenate([[0], np.cumsum(keep)])[offsets]
        word, token_id = word[keep], token_id[keep]
    word_ids = attrs.get("token_word_ids") == "tokenizer"
    rows_by_layer = {}
    for layer, tokens in tqdm(layers, desc=f"contextuality {job.wildcards.dataset}/{job.wildcards.model}"):
        try:
            rows_by_layer[layer] = family.layer_metrics(tokens[keep], offsets, word, token_id, word_ids,
                                                        job.params.options)
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, layer {layer}: {exc}") from None
    identity = tables.model_identity(attrs, job.params.info)
    frame = tables.layer_table(len(attrs["layer_widths"]), ["tokens"],
                               lambda pooling, layer: rows_by_layer.get(layer, []), identity)
    store.write_csv_atomic(frame, job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/contextuality.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"contextuality": contextuality})  # noqa: F821 (injected by Snakemake)
