"""repbench: large-scale representation-geometry benchmarks (library behind the Snakemake workflow)."""

__version__ = "0.1.0"
