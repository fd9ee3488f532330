# What jobs ask for and what they record. Resource needs of every rule, derived from the config
# (repbench.resources.Estimator): memory from the model's size and the data's shape, wall time from the sample count
# and the work per sample, a GPU for extraction unless `extract.device: cpu`. The same rules and profile serve a
# tiny random-init model and a 7B one. A retried job (profiles/slurm sets `retries`) asks `attempt` times as much
# memory and time. Profiles may still override any value per rule (`set-resources`); partitions and accounts are
# the profile's business, not the workflow's.
from repbench.resources import Estimator

ESTIMATOR = Estimator(config, INSTANCES)
# extraction runs on one GPU (the default profile runs one extraction per GPU at a time; Slurm allocates one)
EXTRACT_GPUS = 0 if config["extract"].get("device", "auto") == "cpu" else 1


def _wildcards(wildcards):
    return {k: v for k, v in wildcards.items()}


def mem_mb(stage):
    """`resources: mem_mb=mem_mb("extract")`: the stage's memory need (MB) for this job and attempt."""

    def need(wildcards, threads, attempt):
        return (
            ESTIMATOR.need(stage, _wildcards(wildcards), threads).scaled(attempt).mem_mb
        )

    return need


def runtime(stage):
    """`resources: runtime=runtime("extract")`: the stage's wall-time need (minutes) for this job and attempt."""

    def need(wildcards, threads, attempt):
        return (
            ESTIMATOR.need(stage, _wildcards(wildcards), threads)
            .scaled(attempt)
            .runtime
        )

    return need


# what jobs.smk gathers: every other job's benchmark record and log header, after all of them
JOBS_OUTPUTS = [f"{RESULTS}/tables/jobs.csv"] + [
    f"{RESULTS}/figures/jobs.{fmt}" for fmt in FIGURE_FORMATS
]


def jobs_inputs(wildcards):
    """Every other target of `all`: the jobs rule runs last, when every other job has left its record."""
    return [p for p in all_outputs() if p not in JOBS_OUTPUTS]


def job_records():
    """{rule: [benchmark pattern, log pattern]} of every other rule, in pipeline (definition) order."""
    return {
        r.name: [str(r.benchmark), str(r.log[0]) if r.log else ""]
        for r in workflow.rules
        if r.benchmark is not None and r.name != "jobs"
    }


def job_scope():
    """Wildcard values of the current config: records of models or datasets removed since are left out."""
    models = sorted(set(INSTANCES) | set(config["models"]))
    return dict(
        dataset=sorted(set(config["datasets"]) | set(VIEWS)),
        model=models,
        a=models,
        b=models,
        family=list(FAMILIES),
        space=list(NEIGHBOR_SPACES),
        pooling=sorted(
            set(config["metrics"]["poolings"]) | set(config["extract"]["poolings"])
        ),
    )
