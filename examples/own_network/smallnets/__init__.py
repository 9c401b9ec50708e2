"""lmcpipe's worked example of a network of one's own (README: docs/own-network-and-data.md)."""
