"""repbench's command line for people: ``repbench validate CONFIG`` and ``repbench info STORE``.

The workflow's rules do not go through here: each rule of ``workflow/rules/X.smk`` runs
``workflow/repbench/stages/X.py`` (see :mod:`repbench.stages`).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="repbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"repbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate a config file and list the model instances")
    v.add_argument("config")
    i = sub.add_parser("info", help="summarise an activation store")
    i.add_argument("store")
    args = parser.parse_args(argv)
    if args.command == "validate":
        from .config import ConfigError, datasets_for, load_config, view_datasets_for

        try:
            config, instances = load_config(args.config)
        except (ConfigError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for inst in instances:
            print(f"{inst.name}: {', '.join(datasets_for(inst, config) + view_datasets_for(inst, config))}")
        return 0
    try:
        ds = store.open_activations(args.store)
    except (OSError, KeyError, ValueError) as exc:  # zarr: FileNotFoundError, or not a repbench store
        print(f"error: {args.store}: {exc}", file=sys.stderr)
        return 2
    print(ds)
    print({k: ds.attrs[k] for k in ("model", "dataset", "n_samples", "config_hash") if k in ds.attrs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
