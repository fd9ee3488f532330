"""Stage ``extract`` (workflow/rules/extract.smk): one model's pooled activations on one dataset."""


def extract(job) -> None:
    """Every layer's pooled activations into ``results/activations/{dataset}/{model}.zarr`` (resumable, atomic)."""
    from repbench.extract import extract as run_extraction

    p = job.params
    run_extraction(
        model_name=job.wildcards.model,
        model_spec=p.model_spec,
        revision=p.revision,
        dataset_name=job.wildcards.dataset,
        dataset_spec=p.dataset_spec,
        options=p.options,
        output=job.output[0],
        partial_root=p.partial_root,
    )


if __name__ == "__main__":  # run by the rules of workflow/rules/extract.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    functions = {"extract": extract}
    run_job(snakemake, functions, torch_rules=("extract",))  # noqa: F821 (injected by Snakemake)
