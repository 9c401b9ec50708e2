"""Training: one run, or K runs stacked into one network, from a start point with a mask.

Grouped as open_lth groups its code, one idea per module:

* ``single``: the single-run loop (``train``), the dense run, W_k, IMP retraining, pair copies.
* ``stacked``: the stacked loop (``train_stacked``): K members of a cohort in one step.
* ``step``: the one masked optimiser step both loops use, the optimiser they build, bf16
  autocast, and the watch that turns a non-finite loss into ``Diverged``.
* ``streams``: the data streams: which examples step t of stream (order, copy) sees and how
  they are augmented.
* ``checkpoint``: resume files, run fingerprints, model artifacts and start points.
* ``cohort``: the runs of one (seed, k, level) in one process, in chunks (``lmcpipe cohort``).
"""
