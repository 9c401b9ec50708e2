"""Training a cohort — the runs of one (init seed, k, level) — in one process.

Per-job fixed cost (``import torch``, reading the data, building the network) was about two thirds
of a demo job when every run was its own job; a cohort pays it once for all its runs. Members are
trained in chunks of at most ``stack``: a chunk of one is ``single.train`` exactly as a single run
(bit for bit: the same function, the global RNG reset to the state a fresh process has), a larger
chunk is one stacked model (``training.stacked``). Runs with paper B's repellent term, and runs
whose batches are split into micro-batches (``train.micro_batch``), are always trained alone. How
many members a stacked step holds by default: ``default_stack``.

Resumption: a member whose chunk finished is kept in a ``.partial`` file beside its ``model.pt``
(weights, metrics, fingerprint) until the whole cohort is done; a chunk in progress keeps its
resume checkpoint. A killed cohort restarts from both and ends with the same bits. ``model.pt`` and
``metrics.csv`` of every member appear only once every member is trained, so nothing looks
finished early, and the per-run files are where single runs used to write them: tables, figures
and analyses read what they read before. The ``lmcpipe cohort`` entrypoint is
``lmcpipe.stages.cohort``.

Provenance: each member's record (``lmcpipe.provenance``) holds its chunk's wall time and how many
members the chunk stacked; a member kept in a partial file carries the time recorded when it was
trained, so a resumed cohort reports what each member cost, not zero.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import torch

from lmcpipe import atomic, csvfiles, data, masks, memory, models, paths, provenance
from lmcpipe.errors import Diverged
from lmcpipe.hparams import TrainHParams
from lmcpipe.training import stacked
from lmcpipe.training.checkpoint import model_record, run_fingerprint, start_model
from lmcpipe.training.single import train

METRIC_COLUMNS = ["step", "split", "loss", "error"]


@dataclass(frozen=True)
class Member:
    """One run of a cohort: where it starts, its mask, its data-order stream, where it goes.
    Also the schema of ``lmcpipe cohort --members`` (a JSON list of these, checked field by
    field while the flags are parsed: ``hparams.JsonFlag``)."""

    order: int
    copy: int
    model_out: str
    metrics_out: str
    start: str = ""  # W_k artifact; empty: the random-reinit baseline's fresh init
    mask: str = ""
    references: tuple[str, ...] = field(default=())


def default_stack(device: torch.device, hp: TrainHParams | None = None, members: int = 1,
                  dataset: data.Data | None = None) -> int:
    """Members per stacked step when the experiment leaves it to lmcpipe (``resources.stack``
    0) for a cohort of ``members`` runs of ``hp`` on ``dataset``.

    On the CPU 1: one after another is fastest there (``bench/cohort_throughput.py``). On CUDA
    as many as the device's memory holds (``memory.stack_size``): floor((device memory x 0.9 -
    CUDA context - dataset on the device) / one stacked member's bytes at the batch size), at
    least 1, at most ``members``; 1 when the runs split their batches into micro-batches
    (``train.micro_batch``), which only single runs do.
    """
    total = memory.device_bytes(device) if hp is not None else None
    if total is None or hp is None or splits_batches(hp):
        return 1
    fixed = memory.fixed_bytes(memory.resident_bytes(dataset) if dataset is not None
                               else memory.dataset_bytes(hp.dataset))
    member = memory.footprint(memory.Workload.of(hp), stacked=True).total
    stack = memory.stack_size(total, member, fixed, members)
    gib = memory.GiB
    print(f"stack: {stack} of {members} members: {total / gib:.1f} GiB x "
          f"{1 - memory.MARGIN:.2f} - {fixed / gib:.2f} GiB (CUDA context, data) over "
          f"{member / gib:.2f} GiB per stacked member at batch {hp.batch_size}", flush=True)
    return stack


def splits_batches(hp: TrainHParams) -> bool:
    """Whether the experiment sets micro-batches smaller than its batch (``train.micro_batch``);
    such runs train one after another, whatever the stack."""
    return 0 < hp.micro_batch < hp.batch_size


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _train_chunk(hp: TrainHParams, seed: int, start_step: int, level: int,
                 members: list[Member], chunk: list[int], prints: list[str], dataset: data.Data,
                 fresh_rng: torch.Tensor, stats: dict, compile: str = "none"
                 ) -> list[tuple[dict[str, torch.Tensor], list[dict]]]:
    """Train the members ``chunk`` indexes: alone through ``train.train`` or stacked; ``stats``
    gets what the training reports (``train.run_stats``)."""
    if len(chunk) == 1:
        i = chunk[0]
        m = members[i]
        torch.set_rng_state(fresh_rng)  # as in a process of its own
        model = start_model(hp, m.start or None, seed, start_step, level)
        rows = train(hp, model, dataset, order=m.order, copy=m.copy, start_step=start_step,
                     mask=masks.load(m.mask or None), fingerprint=prints[i],
                     resume_path=paths.resume_file(m.model_out),
                     references=[atomic.load_torch(r)["state_dict"] for r in m.references],
                     stats=stats, compile=compile)
        return [({k: v.detach().cpu() for k, v in model.state_dict().items()}, rows)]
    starts = [start_model(hp, members[i].start or None, seed, start_step, level).state_dict()
              for i in chunk]
    key = hashlib.sha256(json.dumps([prints[i] for i in chunk]).encode()).hexdigest()
    finals, rows = stacked.train_stacked(
        hp, models.build(hp.model, hp.dataset, hp.image_size), starts, dataset,
        [(members[i].order, members[i].copy) for i in chunk],
        [masks.load(members[i].mask or None) for i in chunk], start_step=start_step,
        resume_path=paths.stack_resume_file(members[chunk[0]].model_out), fingerprint=key,
        stats=stats, compile=compile)
    stats["micro_batch"] = hp.batch_size  # a stacked step takes each member's batch whole
    return list(zip(finals, rows, strict=True))


def train_cohort(hp: TrainHParams, seed: int, start_step: int, level: int,
                 members: list[Member], dataset: data.Data, stack: int = 1,
                 stats: list[dict] | None = None, compile: str = "none"
                 ) -> list[tuple[dict[str, torch.Tensor], list[dict]]]:
    """Train every member to ``hp.steps``; returns (state dict, metrics rows) per member.

    Finished members are kept in their partial files (``paths.partial_file``), so a call after a
    kill trains only what is left; the caller writes the artifacts and removes the partials.
    ``stats``, when given, is extended by one dict per member for its provenance record: its
    chunk's ``wall_s`` and ``stacked_with`` (members in the chunk), ``train.run_stats``, and
    ``resumed_from_partial`` (kept from an earlier call: the numbers are those stored then).
    """
    fresh_rng = torch.get_rng_state()
    prints = [run_fingerprint(hp, seed, start_step, None, level, m.order, m.copy, m.start or None,
                              m.mask or None, m.references) for m in members]
    done: dict[int, tuple[dict, list[dict]]] = {}
    runs: dict[int, dict] = {}
    for i, m in enumerate(members):
        part = paths.partial_file(m.model_out)
        if os.path.exists(part):
            state = atomic.load_torch(part)
            if state["fingerprint"] == prints[i]:
                done[i] = state["state_dict"], json.loads(state["rows"])
                runs[i] = {**json.loads(state.get("stats", "{}")), "resumed_from_partial": True}
    todo = [i for i in range(len(members)) if i not in done]
    if done:
        print(f"cohort: {len(done)} of {len(members)} members already trained")
    repel = [i for i in todo if members[i].references and hp.repel_lambda]
    solo = todo if stack <= 1 or splits_batches(hp) else repel
    together = [i for i in todo if i not in solo]
    chunks = [[i] for i in solo] + _chunks(together, stack)
    for n, chunk in enumerate(sorted(chunks), 1):
        print(f"cohort: chunk {n} of {len(chunks)}: "
              + ", ".join(os.path.dirname(members[i].model_out) for i in chunk), flush=True)
        chunk_stats: dict = {}
        began = time.perf_counter()
        try:
            results = _train_chunk(hp, seed, start_step, level, members, chunk, prints, dataset,
                                   fresh_rng, chunk_stats, compile)
        except Diverged as e:  # name the run; no model.pt of the cohort is written
            raise e.of(os.path.dirname(members[chunk[e.member]].model_out)) from None
        chunk_stats.update(wall_s=time.perf_counter() - began, stacked_with=len(chunk))
        for i, (state, rows) in zip(chunk, results, strict=True):
            atomic.save_torch({"fingerprint": prints[i], "state_dict": state,
                               "rows": json.dumps(rows), "stats": json.dumps(chunk_stats)},
                              paths.partial_file(members[i].model_out))
            done[i] = state, rows
            runs[i] = {**chunk_stats, "resumed_from_partial": False}
        for resume in (paths.resume_file(members[chunk[0]].model_out),
                       paths.stack_resume_file(members[chunk[0]].model_out)):
            if os.path.exists(resume):
                os.unlink(resume)
    if stats is not None:
        stats.extend(runs[i] for i in range(len(members)))
    return [done[i] for i in range(len(members))]


def write_members(hp: TrainHParams, members: list[Member],
                  results: list[tuple[dict[str, torch.Tensor], list[dict]]]) -> None:
    """Every member's model.pt and metrics.csv, then the partial files go."""
    template = models.build(hp.model, hp.dataset, hp.image_size)
    for m, (state, rows) in zip(members, results, strict=True):
        template.load_state_dict(state)
        csvfiles.save_rows(rows, METRIC_COLUMNS, m.metrics_out)
        atomic.save_torch(model_record(template, hp.model, hp.steps), m.model_out)
    for m in members:
        if os.path.exists(paths.partial_file(m.model_out)):
            os.unlink(paths.partial_file(m.model_out))


def write_records(members: list[Member], stats: list[dict], device: torch.device,
                  job_start: float, dataset: data.Data) -> None:
    """Every member's provenance record (stage "cohort"), after ``write_members``: a record is
    never written before its model.pt. ``dataset``: what they trained on (its source folder
    goes into each record: ``provenance.data_fields``)."""
    for m, s in zip(members, stats, strict=True):
        wall_s = s.get("wall_s")
        provenance.write_record(m.model_out, provenance.record(
            "cohort", device, job_start, wall_s, **provenance.training_fields(s, wall_s),
            **provenance.data_fields(dataset)))
