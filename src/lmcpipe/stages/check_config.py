"""``lmcpipe check-config``: validate a config file before any job starts.

The same ``lmcpipe.config.validate`` Snakemake's ``common.smk`` runs, callable without Snakemake
so a bad value is reported in one line (naming its key) while the config is being written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from lmcpipe.config import SCHEMA, ConfigError, validate


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("configfile")
    p.add_argument("--schema", default=str(SCHEMA))


def main(args: argparse.Namespace) -> None:
    config = yaml.safe_load(Path(args.configfile).read_text())
    try:
        experiments = validate(config, args.schema)
    except ConfigError as e:
        raise SystemExit(f"lmcpipe: {e}") from None
    print(f"{args.configfile}: ok ({', '.join(experiments)})")
