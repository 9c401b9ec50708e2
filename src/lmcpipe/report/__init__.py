"""The reproduction report: the papers' claims (``claims.yaml``) judged on lmcpipe's tables.

``claims`` loads the claims and turns a measured value into a verdict, ``measures`` computes
lmcpipe's value of each claim from the tidy tables, ``pages`` writes the static HTML pages. The
``lmcpipe report`` and ``report-index`` stages (``lmcpipe.stages``) are their command lines.
"""
