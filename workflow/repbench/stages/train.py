"""Stage ``train`` (workflow/rules/train.smk): checkpoints of a small causal LM trained offline."""


def train(job) -> None:
    """Train ``models.NAME`` (source: trained) on its dataset and save every configured step's checkpoint."""
    from repbench.data import load_samples
    from repbench.train import train_checkpoints

    samples = load_samples(job.params.dataset_name, job.params.dataset_spec)
    train_checkpoints(job.wildcards.model, job.params.model_spec, samples, job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/train.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"train": train}, torch_rules=("train",))  # noqa: F821 (injected by Snakemake)
