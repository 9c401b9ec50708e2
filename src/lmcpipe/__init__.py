"""lmcpipe: lottery-ticket and linear-mode-connectivity experiments, cached by Snakemake."""

__version__ = "0.1.0"
