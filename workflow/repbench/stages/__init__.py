"""Stages: the code the workflow's rules run, one module per rule file.

Every rule of ``workflow/rules/X.smk`` runs ``workflow/repbench/stages/X.py`` through Snakemake's ``script:``
directive; the module's function named like the rule does the job (reads the rule's inputs, calls the library,
writes its outputs atomically). Run as a script, a stage module ends with :func:`run_job`, which is the one place
for what every job shares: its stdout and stderr (tqdm bars included) go to the rule's log, the log starts with
provenance (host, Slurm job id, GPU, versions) and ends with the job's wall time.

Snakemake runs a stage module as a script with its own preamble in front, so stage modules hold no
``from __future__`` import (it must come first in a file) and import the library with absolute imports.

Stage functions take the ``snakemake`` object Snakemake hands the script (``job.input``, ``job.output``,
``job.params``, ``job.wildcards``, ``job.threads``, ``job.log``); everything below them takes plain values.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .. import __version__


@contextlib.contextmanager
def redirect_output(log_path: str | Path):
    """Send this process's fds 1 and 2 (C-level writes) and ``sys.stdout``/``sys.stderr`` (Python writes, also
    where they had been replaced) to ``log_path``; restore all on exit."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved, saved_streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


MMAP_THRESHOLD_BYTES = 1 << 20


def release_freed_arrays(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Have glibc serve every allocation of ``threshold`` bytes or more (numpy and torch arrays) by its own mmap,
    so that a freed array goes back to the OS at once; True when set (glibc), False elsewhere (nothing changes).

    glibc's default threshold starts at 128 KiB but rises to the size of each mmapped block freed, up to 32 MiB;
    after that every array below 32 MiB (at N = 100 000 a per-layer (N, k) array is 8 MB) comes from the heap,
    and a long job that allocates and frees many of them keeps the freed space as resident memory. Measured on
    the alignment job at N = 20 000 (every byte budget scaled to its N = 100 000 share): the memory held after
    preparing both models fell from 1 056 to 797 MB, the job's phase peaks by 240–340 MB (``malloc_trim`` between
    phases gave back 50 MB of it). Setting the threshold (``mallopt(M_MMAP_THRESHOLD)``, as the
    ``MALLOC_MMAP_THRESHOLD_`` variable would) also stops it rising.

    It has a price: each such allocation then maps fresh pages and faults them in. Only the alignment job, whose
    memory it bounds, sets it. The exact k-NN search at N = 20 000 ran 1.75× (euclidean) and 1.2× (cosine) slower
    with it (system time 10 s instead of 1 s), so the neighbors job and every other job keep glibc's default."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(-3, int(threshold)))  # M_MMAP_THRESHOLD = -3 (malloc.h)


def trim_heap() -> bool:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim(0)``); True when glibc released some.

    For jobs that keep glibc's default mmap threshold (see :func:`release_freed_arrays`): arrays below the
    threshold that a unit of work (a layer) freed stay resident in the heap until trimmed, so the next unit would
    start with them on top of its own. Called between units, it costs one pass over the heap and the page faults
    of memory reused later. Measured on the neighbors job at N = 100 000, D = 768, 4 layers (euclidean): peak
    3 352 MB untrimmed, 2 823 MB trimmed before and after each layer's search."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


@functools.cache
def _glibc():
    """The process's own C library when it is glibc (its own symbols: no find_library, which runs ldconfig), else
    None. Looked up once per process: ``platform.libc_ver`` reads the interpreter's binary, and the neighbors and
    intrinsic-dimension jobs trim the heap at every layer."""
    import ctypes

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both exist, or this is not a usable glibc)
    except (OSError, AttributeError):
        return None
    return libc


def provenance_header(uses_torch: bool) -> str:
    """Host, Slurm job id and versions (with torch: the GPU) for the top of a job's log."""
    lines = [
        f"host: {platform.node()}",
        f"slurm_job_id: {os.environ.get('SLURM_JOB_ID', '')}",
        f"python {platform.python_version()}  repbench {__version__}",
    ]
    if uses_torch:
        from importlib.metadata import version  # not `import transformers`: seconds per job for a version string

        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        lines.append(f"gpu: {gpu}  CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}")
        lines.append(f"torch {torch.__version__}  transformers {version('transformers')}")
    return "\n".join(lines)


def run_job(job, functions: dict[str, Callable], torch_rules: tuple[str, ...] = ()) -> None:
    """Run ``functions[job.rule](job)`` with the job's stdout/stderr in its log, a provenance header and the wall time.

    ``torch_rules``: the rules whose function uses torch (its thread count is then set to the rule's ``threads``);
    the others never import it (that costs seconds per job).
    """
    try:
        function = functions[job.rule]
    except KeyError:
        raise KeyError(f"stage has no function for rule {job.rule!r} (has: {', '.join(functions)})") from None
    uses_torch = job.rule in torch_rules
    if uses_torch:
        import torch

        torch.set_num_threads(max(1, int(job.threads)))
    start = time.perf_counter()
    with redirect_output(job.log[0]):
        print(f"== repbench rule {job.rule} {dict(job.wildcards)}\n{provenance_header(uses_torch)}", flush=True)
        try:
            function(job)
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            print(f"wall_time_s: {time.perf_counter() - start:.3f}", flush=True)

