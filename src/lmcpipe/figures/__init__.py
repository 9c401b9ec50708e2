"""Publication figures, rendered from an experiment's (or a sweep's) tidy tables.

Figures read only ``results/tables/<name>/*.csv`` (never checkpoints), so restyling a plot reruns
the cheap ``figure`` jobs alone. The package's modules:

* ``registry``: the one list of figures (name -> family, drawing function, tables read); stdlib
  only, because ``lmcpipe.paths`` and the Snakemake rules read it while parsing the workflow;
* ``render``: ``render(name, tables_dir, threshold)`` draws a figure by name, ``annotate`` adds
  what every figure says about its runs;
* ``style``: the shared look and table reading (titles, legends, threshold, dense band, axes);
* one module per paper or family of figures: ``paper_a`` (Figs 2-4, accuracy and instability
  vs sparsity), ``paper_a_deepest`` (Fig 5, Table 2, Figs 6/7), ``ranges`` (Fig 9),
  ``chains`` (papers B/C analyses of IMP chains), ``probes`` (paper C probes), ``sweep``
  (paper B sweeps).

This file imports nothing, so importing the registry never loads matplotlib or pandas.
"""
