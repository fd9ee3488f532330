"""Device and dtype choice, the GPU slots concurrent extractions share, and the automatic token budget.

GPUs. With several visible GPUs each extraction takes the first GPU whose lock file (``results/.partial/gpus/``)
it can lock (``fcntl.flock``, released by the kernel even when the job is killed), so concurrent Snakemake jobs
(``--resources gpu=N``) land on distinct devices.
"""

from __future__ import annotations

import fcntl
import os
import platform
import time
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CPU_TOKEN_BUDGET = 8192
GPU_TOKEN_BUDGET_MAX = 65536


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("extract.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[requested]


class GpuSlot:
    """An exclusive claim on one GPU, held as an ``flock`` on ``{lock_dir}/gpu-{device_id}.lock``.

    The kernel drops the lock when the process ends, however it ends, so a killed job never leaves a GPU taken.
    """

    def __init__(self, index: int, device_id: str, fd: int, path: Path):
        self.index, self.device_id, self._fd, self.path = index, device_id, fd, path

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> GpuSlot:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_gpu_slot(lock_dir: str | Path, device_ids: list[str], *, wait: bool = True,
                     poll_s: float = 2.0, log=None) -> GpuSlot | None:
    """Lock the first free GPU among ``device_ids`` (stable ids, e.g. UUIDs; their order gives the index).

    Returns ``None`` when all are taken and ``wait`` is false; otherwise polls until one frees up (which only
    happens when more jobs than GPUs were allowed to run, e.g. ``--resources gpu=4`` on two GPUs).
    """
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    announced = False
    while True:
        for index, dev in enumerate(device_ids):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(dev))
            path = lock_dir / f"gpu-{safe}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {platform.node()}\n".encode())
            return GpuSlot(index, str(dev), fd, path)
        if not wait:
            return None
        if not announced and log is not None:
            log(f"all {len(device_ids)} GPUs are taken by other extractions; waiting for one ({lock_dir})")
            announced = True
        time.sleep(poll_s)


def cuda_device_ids() -> list[str]:
    """Stable ids of the visible CUDA devices (UUIDs where torch reports them, else indices)."""
    ids = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        ids.append(str(uuid) if uuid else str(i))
    return ids


def gpu_lock_dir(partial_root: str | Path) -> Path:
    """``results/.partial/gpus`` for the workflow's ``results/.partial/activations/{dataset}``."""
    root = Path(partial_root)
    return root.parent.parent / "gpus" if root.parent.name == "activations" else root / "gpus"


def auto_token_budget(model: torch.nn.Module, device: torch.device, n_poolings: int) -> int:
    """Padded tokens per batch: ``8192`` on CPU; on CUDA about half the free memory over a per-token estimate
    of inference activations (q/k/v/attention/MLP in the compute dtype plus float32 pooling), capped at 65 536.
    CUDA out-of-memory still backs off (see :func:`run_extraction`)."""
    if device.type != "cuda":
        return CPU_TOKEN_BUDGET
    cfg = model.config
    d = int(getattr(cfg, "hidden_size", 0) or max(getattr(cfg, "hidden_sizes", [1024])))
    inter = int(getattr(cfg, "intermediate_size", 0) or 4 * d)
    itemsize = next(model.parameters()).element_size()
    per_token = itemsize * (12 * d + 3 * inter) + 4 * d * (2 + n_poolings)
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(GPU_TOKEN_BUDGET_MAX, max(1024, 0.5 * free // per_token)))
