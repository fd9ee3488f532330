"""Stage ``jobs`` (workflow/rules/jobs.smk): every job's benchmark record and log header in one table, and where
the time went per stage."""


def jobs(job) -> None:
    """``results/tables/jobs.csv`` and the time figure (every configured format)."""
    from repbench import figures, store
    from repbench.jobs import jobs_figure, jobs_table, stage_summary

    frame = jobs_table(job.params.records, job.params.scope)
    store.write_csv_atomic(frame, job.output.table)
    print(stage_summary(frame).to_string(index=False), flush=True)
    figures.save(jobs_figure(frame), list(job.output.figures), dpi=job.params.dpi)


if __name__ == "__main__":  # run by the rules of workflow/rules/jobs.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"jobs": jobs})  # noqa: F821 (injected by Snakemake)
