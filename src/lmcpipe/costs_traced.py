"""Cost-table entries for networks the shipped table lacks: a user's own or torchvision's.

``costs.yaml`` holds figures measured (CPU) or bounded (GPU rooflines) for lmcpipe's networks by
``scripts/cost_table.py``. A network lmcpipe does not ship (``models.spec.is_user``) has none,
yet every job still needs a runtime and memory request. Its entry is derived here, when the
plan is made, from what the network's traced work says relative to the shipped network nearest
to it in FLOPs per example:

- seconds per member-step, per precision and device: the reference's figure, its per-step
  (batch-independent) part kept and the part that grows with the batch scaled by the ratio of
  FLOPs per example (``lmcpipe.workload.step_cost`` on the meta device); the source says so;
- parameters, and peak bytes per example for training and evaluation (``lmcpipe.memory.trace``);
- the evaluation-to-training ratio of the reference.

It is an estimate of an estimate: a site with measured figures gives them in its profile
(``cluster.costs.<network>.<precision>.<device>``), which win as for any network. Tracing
imports torch; ``lmcpipe.workload`` caches the traced work on disk, so a plan pays it once.
"""

from __future__ import annotations

import math
from typing import Any

# shipped networks a derived entry may start from (on small images: the ImageNet networks'
# figures carry 224-px pipelines a user's network on its own data rarely shares)
REFERENCES = ("lenet_300_100", "resnet20", "vgg16")


def _flops_per_example(network: str, dataset: str, image_size: int = 0) -> float:
    from lmcpipe.workload import step_cost

    batch = 8
    return step_cost(network, dataset, batch, "fp32", image_size).flops / batch


def derived_entry(network: str, dataset: str, shipped: dict[str, dict[str, Any]]
                  ) -> dict[str, Any]:
    """A table entry for ``network`` on ``dataset`` (see the module docstring); ``shipped``:
    the table's entries of the ``REFERENCES`` it has."""
    from lmcpipe import memory, models

    flops = _flops_per_example(network, dataset)
    refs = {name: _flops_per_example(name, entry["dataset"], entry.get("image_size", 0))
            for name, entry in shipped.items()}
    ref = min(refs, key=lambda n: abs(math.log(max(flops, 1.0) / max(refs[n], 1.0))))
    ratio = flops / refs[ref]
    entry = shipped[ref]
    seconds: dict[str, dict[str, dict[str, Any]]] = {}
    for precision, rows in entry["seconds"].items():
        seconds[precision] = {}
        for device, row in rows.items():
            fixed = row.get("fixed", 0.0)
            seconds[precision][device] = {
                "seconds": fixed + (row["seconds"] - fixed) * ratio, "batch": row["batch"],
                "fixed": fixed,
                "source": f"derived: {ref}'s figure scaled by FLOPs per example ({flops:.3g} "
                          f"vs {refs[ref]:.3g}; {row.get('source', '').split(':')[0]})"}
    import torch

    with torch.device("meta"):
        params = sum(p.numel() for p in models.build(network, dataset).parameters())
    trace = memory.trace(network, dataset, 2)
    return {"dataset": dataset, "image_size": 0, "params": params,
            "train_peak_bytes_per_example": -(-trace.saved // 2),
            # per example, the largest activation twice (a layer's input and output alive
            # together): the trace is of 2 examples, so that is its largest tensor
            "eval_peak_bytes_per_example": trace.largest,
            "eval_ratio": entry["eval_ratio"], "seconds": seconds, "reference": ref}
