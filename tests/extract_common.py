"""Inputs shared by the extraction tests (test_extract*.py)."""

DATASET = {"source": "builtin", "name": "python-docs", "n_samples": 24, "seed": 0, "max_length": 24, "min_chars": 1}
OPTIONS = {"poolings": ["mean", "last", "first"], "store_dtype": "float32", "device": "cpu", "token_budget": 256,
           "max_batch_size": 8, "chunk_mb": 0.001}
