"""lmcpipe: lottery-ticket and linear-mode-connectivity experiments as a cached Snakemake pipeline."""

__version__ = "0.1.0"
