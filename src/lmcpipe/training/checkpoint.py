"""Checkpoints and start points: resume files, run fingerprints, model artifacts.

A resume file holding model, optimiser, step, metrics and RNG state is written every
``checkpoint_every`` steps under the run's fingerprint (what its result depends on), so a
killed run restarts where it stopped and ends with the same weights as an uninterrupted one,
and a file written for other inputs is ignored as stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from lmcpipe import atomic, models, optim
from lmcpipe.hparams import TrainHParams, to_json
from lmcpipe.models import PrunableModel


def run_stats(start_step: int, stop_step: int, first_step: int, resumed: bool) -> dict:
    """What a training process did, for its provenance record: the run's schedule range, the
    steps trained here (fewer after a resume) and the step it resumed at (None: from the start)."""
    return {"start_step": start_step, "stop_step": stop_step,
            "steps": max(stop_step - first_step, 0), "resumed_at": first_step if resumed else None}


def checkpoint_due(hp: TrainHParams, step: int, stop: int,
                   path: str | os.PathLike | None) -> bool:
    """Whether a loop that has just reached ``step`` writes its resume file: every
    ``hp.checkpoint_every`` steps, never at the end (the run's artifacts follow then)."""
    return bool(path and hp.checkpoint_every and step % hp.checkpoint_every == 0 and step < stop)


def read_resume(path: str | os.PathLike | None, fingerprint: str,
                optimizer: optim.SGD | optim.Adam) -> dict | None:
    """A resume checkpoint written under ``fingerprint``, with the optimiser and the RNG state
    already restored from it; None when there is none or it belongs to other inputs (stale)."""
    if not path or not os.path.exists(path):
        return None
    state = atomic.load_torch(path)
    if state["fingerprint"] != fingerprint:
        print(f"ignoring stale resume file {path}")
        return None
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return state


def model_record(model: PrunableModel, name: str, step: int) -> dict:
    """What a model artifact holds: CPU weights, the step reached, the prunable names and the
    never-pruned conv/linear weights (``masks.frozen_count``)."""
    return {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": step,
        "model": name,
        "prunable": model.prunable_names(),
        "frozen": model.frozen_names(),
    }


def load_model(hp: TrainHParams, path: str) -> tuple[PrunableModel, int]:
    """A network of ``hp.model`` with the weights of a model artifact, and its step."""
    record = atomic.load_torch(path)
    model = models.build(hp.model, hp.dataset, hp.image_size)
    model.load_state_dict(record["state_dict"])
    return model, record["step"]


def _file_digest(path: str | None) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""


def run_fingerprint(hp: TrainHParams, seed: int, start_step: int, stop_step: int | None,
                    level: int, order: int, copy: int, start: str | None, mask: str | None,
                    references: list[str] | tuple[str, ...] = ()) -> str:
    """What a run's result depends on (hparams, seeds, the bytes of its start point, mask and
    references; no start point = the random-reinit baseline): a resume or partial file written
    under another fingerprint is stale."""
    identity = [to_json(hp), seed, not start, start_step, stop_step, level, order, copy,
                _file_digest(start), _file_digest(mask)]
    identity += [_file_digest(r) for r in references]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def start_model(hp: TrainHParams, start: str | None, seed: int, start_step: int,
                level: int) -> PrunableModel:
    """The network a run starts from: the weights of ``start`` (W_k), or without one the
    random-reinit baseline's fresh init seeded by (seed, k, level)."""
    if start:
        return load_model(hp, start)[0]
    return models.build_initialised(hp.model, hp.dataset, "reinit", seed, start_step, level,
                                    bias=hp.bias_init, init=hp.model_init,
                                    image_size=hp.image_size)
