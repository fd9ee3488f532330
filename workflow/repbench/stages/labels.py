"""Stage ``labels`` (workflow/rules/labels.smk): one labelled dataset's labels as a small store of their own."""

from pathlib import Path


def labels(job) -> None:
    """``results/labels/{dataset}.zarr``: the seeded sample draw of the dataset (the same ids the extraction
    draws) with each sample's label and sample columns (see :func:`repbench.store.write_labels`)."""
    from repbench import __version__, store
    from repbench.data import label_counts, load_samples

    dataset, spec = job.wildcards.dataset, job.params.spec
    samples = load_samples(dataset, spec)
    if samples.labels is None:
        raise ValueError(f"dataset {dataset!r} has no labels (set label_field, labels_path or labels)")
    if samples.label_type == "class":
        print("class counts: " + ", ".join(f"{name} {count}" for name, count in label_counts(samples).items()))
    store.write_labels(job.output[0], sample_ids=samples.ids, labels=samples.labels,
                       label_names=samples.label_names, label_type=samples.label_type, groups=samples.groups,
                       attrs={"dataset": dataset, "dataset_fingerprint": samples.fingerprint(),
                              "repbench_version": __version__})


if __name__ == "__main__":  # run by the rules of workflow/rules/labels.smk (script: directive)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"labels": labels})  # noqa: F821 (injected by Snakemake)
