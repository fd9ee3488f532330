"""Where a job's Dask graph runs: the job's own threads, or a ``dask.distributed`` cluster the user already has.

Stages build their independent units (an alignment job's pairs, a per-model family's layers) as one Dask graph
and compute it inside :func:`scheduler`. Without ``dask.scheduler_address`` in the config the graph runs on a
threaded scheduler with the job's ``threads`` workers (what Snakemake reserved for it). With an address (e.g. the
scheduler of a ``dask-jobqueue`` ``SLURMCluster``, or ``tcp://host:8786`` of ``dask scheduler``) the same graph
runs on that cluster's workers; the job itself then only waits, and the results come back to it. The workers
import ``repbench`` from their own environment, which must be the same version as the workflow's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class SchedulerUnreachable(RuntimeError):
    """No Dask scheduler answered at the configured address in time."""


@contextlib.contextmanager
def scheduler(threads: int, address: str | None = None, timeout_s: float = 10.0) -> Iterator[object | None]:
    """Run ``dask.compute`` calls inside on ``threads`` local threads, or on the cluster at ``address``.

    Yields the ``distributed.Client`` (None for threads). An address that does not answer within ``timeout_s``
    raises :class:`SchedulerUnreachable` naming the config key ``dask.scheduler_address``.
    """
    import dask

    if not address:
        with dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
            yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise SchedulerUnreachable(f"dask.scheduler_address is set but dask.distributed is missing: {exc}") from None
    try:
        client = Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(
            f"dask.scheduler_address: no Dask scheduler answered at {address!r} within {timeout_s:g} s ({exc}); "
            "start the cluster first or remove the key to run on the job's threads") from None
    try:
        with dask.config.set(scheduler=client):
            yield client
    finally:
        client.close()
