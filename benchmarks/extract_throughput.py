"""Benchmark: extraction throughput of the repbench path against a naive loop, measured in the same run.

Workload: random-init GPT-NeoX models shaped like Pythia-160M, -1B and -2.8B (``--tiny``: two toy shapes that run
on a CPU in seconds), ``--n-seqs`` sequences (default 4096) of seeded random length 16–512 with seeded random
token ids; every layer mean-pooled; bfloat16 on CUDA (float32 on CPU).

repbench path: ``repbench.extract.prepare_model`` + ``run_extraction`` exactly as an extraction job runs them
(forward hooks pooling per layer on the device, length-sorted batches under the automatic token budget, causal
decoders without the padding mask, background input preparation, side-stream device-to-host copies, background
Zarr v3 writer into a real activation store in a temporary folder). Timed twice per repeat: writing the store,
and with the writer discarding results (``group=None``: same copies and checks, no Zarr writes), after one
untimed warm-up pass over the whole set (compilation, cuBLAS heuristics for every batch shape, first touch of the
pinned host buffers). ``write_overhead = time with writing / time without − 1`` (best of ``--repeats``).

naive path: batches of 4 in dataset order, every batch padded to the longest sequence of the dataset, the
padding mask passed, ``output_hidden_states=True``, masked mean pooling of every layer after the forward, results
copied to the host each batch. Timed on the first ``--naive-seqs`` sequences (a rate; the loop is uniform).

Figures: ``tok_s`` = real (non-padding) tokens per second of the repbench path with writing;
``mfu = 2 × non-embedding parameters × tok_s / 790 TFLOP/s`` (790 TFLOP/s is the dense bfloat16 matmul rate
measured on the H100/H200 machines this was developed on, not the vendor's spec; attention FLOPs are not
counted); ``ratio_vs_naive`` = tok_s / naive tok_s.

Usage: python benchmarks/extract_throughput.py [--tiny] [--models 160m,1b,2.8b] [--compile 1b] [--repeats 2]
One line per configuration: ``extract: model=<name> tok_s=<float> mfu=<float> ratio_vs_naive=<float>
write_overhead=<float>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workflow"))

from repbench import store  # noqa: E402
from repbench.extract import (  # noqa: E402
    TextFeed,
    auto_token_budget,
    prepare_model,
    run_extraction,
    unit_plan,
)
from repbench.models import LoadedModel  # noqa: E402

PEAK_FLOPS = 790e12
SHAPES = {  # Pythia shapes (d_model, layers, heads, d_ff)
    "pythia-160m": (768, 12, 12, 3072),
    "pythia-1b": (2048, 16, 8, 8192),
    "pythia-2.8b": (2560, 32, 32, 10240),
}
TINY = {"tiny-a": (64, 2, 4, 256), "tiny-b": (128, 4, 4, 512)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(shape, device, dtype, vocab, seed=0):
    from transformers import AutoConfig, AutoModel

    d, layers, heads, ff = shape
    cfg = AutoConfig.for_model("gpt_neox", hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=ff, vocab_size=vocab, rotary_pct=0.25, max_position_embeddings=2048,
                               use_parallel_residual=True)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModel.from_config(cfg, dtype=dtype)
    model.eval()
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return model, total - embedding


def data(n, lo, hi, vocab, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi + 1, size=n)
    return [rng.integers(0, vocab, size=int(k)).tolist() for k in lengths]


@torch.inference_mode()
def naive(model, seqs, device, batch=4):
    """Tokens/s of the naive loop (see module docstring)."""
    width = max(len(s) for s in seqs)  # the dataset's longest sequence
    tokens = 0
    for warm in (True, False):
        sync(device)
        t0 = time.perf_counter()
        todo = seqs[: 2 * batch] if warm else seqs
        for i in range(0, len(todo), batch):
            b = todo[i : i + batch]
            ids = torch.zeros((len(b), width), dtype=torch.long)
            mask = torch.zeros((len(b), width), dtype=torch.long)
            for j, s in enumerate(b):
                ids[j, : len(s)] = torch.as_tensor(s)
                mask[j, : len(s)] = 1
            ids, mask = ids.to(device), mask.to(device)
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            m = mask.unsqueeze(-1).float()
            pooled = torch.stack([(h.float() * m).sum(1) / m.sum(1) for h in hidden])
            pooled.cpu()
            if not warm:
                tokens += int(mask.sum())
        sync(device)
        seconds = time.perf_counter() - t0
    return tokens / seconds


def repbench_pass(pooler, seqs, device, budget, chunk, unit_chunks, write_dir=None, progress=False):
    """One repbench extraction over ``seqs``; returns (stats, seconds incl. writer drain and store finalize)."""
    n = len(seqs)
    ids = [f"s{i}" for i in range(n)]
    feed = TextFeed(encoded=seqs, pad_id=0)
    group = progress_file = None
    options = {"poolings": pooler.poolings, "store_dtype": "float32", "max_batch_size": 1024}
    if write_dir is not None:
        path = os.path.join(write_dir, f"store-{time.monotonic_ns()}.zarr")
        group = store.create_activation_store(path, sample_ids=ids, n_layers=pooler.n_layers, n_features=pooler.width,
                                              poolings=pooler.poolings, chunk_samples=chunk, dtype="float32", attrs={})
        progress_file = os.path.join(write_dir, f"progress-{time.monotonic_ns()}.json")
    sync(device)
    t0 = time.perf_counter()
    stats = run_extraction(pooler=pooler, feed=feed, sample_ids=ids, model_name="bench", options=options,
                           device=device, chunk=chunk, unit_chunks=unit_chunks, group=group,
                           progress_file=progress_file, done_chunks=set(), token_budget=budget, progress=progress)
    if group is not None:
        store.finalize_group(path, {"benchmark": True})
    sync(device)
    return stats, time.perf_counter() - t0


def profile_pass(pooler, seqs, device, budget, chunk, unit_chunks):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        repbench_pass(pooler, seqs, device, budget, chunk, unit_chunks)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=70), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="toy shapes, 256 short sequences (CPU smoke test)")
    ap.add_argument("--models", default=None, help="comma-separated subset, e.g. pythia-1b")
    ap.add_argument("--n-seqs", type=int, default=None)
    ap.add_argument("--naive-seqs", type=int, default=None, help="sequences timed in the naive loop (default 768)")
    ap.add_argument("--compile", default="", help="comma-separated models also measured with torch.compile")
    ap.add_argument("--token-budget", type=int, default=None, help="override the automatic token budget")
    ap.add_argument("--sweep-budgets", default="", help="model:b1,b2,... extra no-write passes at these budgets")
    ap.add_argument("--profile", default="", help="model to profile (one pass of 512 sequences)")
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats of each repbench pass (best is kept)")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = TINY if args.tiny else SHAPES
    names = args.models.split(",") if args.models else list(shapes)
    n = args.n_seqs or (256 if args.tiny else 4096)
    lo, hi = (16, 128) if args.tiny else (16, 512)
    naive_n = min(n, args.naive_seqs or (n if args.tiny else 768))
    vocab = 1000 if args.tiny else 50304
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {dev_name}  torch {torch.__version__}  dtype {str(dtype).replace('torch.', '')}  "
          f"sequences {n} of length {lo}-{hi}  peak for MFU {PEAK_FLOPS / 1e12:.0f} TFLOP/s", flush=True)
    seqs = data(n, lo, hi, vocab)
    sweeps = dict(s.split(":", 1) for s in args.sweep_budgets.split(";") if s) if args.sweep_budgets else {}
    compiled = set(filter(None, args.compile.split(",")))
    tmp = tempfile.mkdtemp(prefix="repbench-bench-")
    lines = []
    for name in names:
        t_build = time.perf_counter()
        model, non_embedding = build(shapes[name], device, dtype, vocab)
        print(f"[{name}] built: {non_embedding / 1e6:.1f}M non-embedding parameters "
              f"({time.perf_counter() - t_build:.1f}s)", flush=True)
        naive_tok_s = naive(model, seqs[:naive_n], device)
        print(f"[{name}] naive: {naive_tok_s:.0f} tok/s on {naive_n} sequences", flush=True)
        for use_compile in ([False, True] if name in compiled else [False]):
            label = name + ("+compile" if use_compile else "")
            options = {"poolings": ["mean"], "compile": use_compile}
            loaded = LoadedModel(model=model, tokenizer=None, provenance={}, modality="text")
            pooler, info = prepare_model(loaded, options, device, dtype)
            budget = args.token_budget or auto_token_budget(model, device, 1)
            chunk = store.chunk_samples_for(pooler.width, 4, 1, n)
            unit_chunks = unit_plan(n, chunk, pooler.n_layers, pooler.width, 1, 256, 1 << 20)
            t_warm = time.perf_counter()
            # warm-up over the full set: every batch shape, and the first touch of the pinned host buffers
            # (seconds in a VM; PyTorch's host allocator caches them afterwards) stay out of the timings
            repbench_pass(pooler, seqs, device, budget, chunk, unit_chunks)
            print(f"[{label}] attention: {info['attention']}; token budget {budget}; chunk {chunk} samples; "
                  f"unit {unit_chunks} chunks; warm-up {time.perf_counter() - t_warm:.1f}s", flush=True)
            best_nw = best_w = None
            for _ in range(args.repeats):
                s_nw, t_nw = repbench_pass(pooler, seqs, device, budget, chunk, unit_chunks)
                s_w, t_w = repbench_pass(pooler, seqs, device, budget, chunk, unit_chunks, write_dir=tmp)
                best_nw = min(best_nw or t_nw, t_nw)
                if best_w is None or t_w < best_w[1]:
                    best_w = (s_w, t_w)
            stats, t_w = best_w
            tok_s = stats.tokens / t_w
            mfu = 2 * non_embedding * tok_s / PEAK_FLOPS
            print(f"[{label}] no-write {stats.tokens / best_nw:.0f} tok/s ({best_nw:.2f}s), write {tok_s:.0f} tok/s "
                  f"({t_w:.2f}s); padding {1 - stats.tokens / stats.padded_tokens:.1%}; units {stats.units}; "
                  f"compute waited {stats.writer_wait_s:.2f}s for the writer; OOM back-offs {stats.oom_backoffs}; "
                  f"achieved {2 * non_embedding * tok_s / 1e12:.1f} TFLOP/s", flush=True)
            for b in filter(None, sweeps.get(name, "").split(",")):
                s_b, t_b = repbench_pass(pooler, seqs, device, int(b), chunk, unit_chunks)
                print(f"[{label}] sweep: token budget {int(b)}: {s_b.tokens / t_b:.0f} tok/s no-write "
                      f"(padding {1 - s_b.tokens / s_b.padded_tokens:.1%})", flush=True)
            if args.profile == name and not use_compile:
                profile_pass(pooler, seqs[:512], device, budget, chunk, unit_chunks)
            pooler.remove()
            lines.append(f"extract: model={label} tok_s={tok_s:.1f} mfu={mfu:.4f} "
                         f"ratio_vs_naive={tok_s / naive_tok_s:.3f} write_overhead={t_w / best_nw - 1:.4f}")
            print(lines[-1], flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"device: {dev_name}")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
