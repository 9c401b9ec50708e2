"""``lmcpipe cohort``: the runs of one (init seed, k, level) trained in one process.

One job per cohort instead of per run pays ``import torch``, reading the data and building the
network once (``training.cohort`` says why and how members are chunked and resumed). The stage
parses the member list, picks the device's stack size and writes every member's files at the end,
their provenance records last (earlier records of the members are removed first).
"""

from __future__ import annotations

import argparse
import time

import torch

from lmcpipe import data, devices, provenance
from lmcpipe.hparams import JsonFlag, TrainHParams, add_compile_argument
from lmcpipe.training import cohort


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, action=JsonFlag, schema=TrainHParams,
                   help="TrainHParams as JSON")
    p.add_argument("--seed", type=int, required=True, help="init seed s")
    p.add_argument("--start-step", type=int, required=True,
                   help="k: schedule position of the start (0 for the restarted control)")
    p.add_argument("--level", type=int, required=True, help="pruning level (seeds reinit)")
    p.add_argument("--members", required=True, action=JsonFlag, schema=list[cohort.Member],
                   help="JSON list of {order, copy, model_out, metrics_out, start, mask, "
                        "references}")
    p.add_argument("--stack", type=int, default=0,
                   help="members per stacked step (0: 1 on the CPU, on CUDA as many as the "
                        "device's memory holds: lmcpipe.training.cohort.default_stack)")
    p.add_argument("--threads", type=int, default=1)
    add_compile_argument(p)
    devices.add_arguments(p)


def main(args: argparse.Namespace) -> None:
    job_start = time.perf_counter()
    hp, members = args.hparams, args.members
    if not members:
        raise SystemExit("lmcpipe cohort: --members lists no run")
    device = devices.from_args(args, hp.precision)  # its slot first: pins, before torch threads
    torch.set_num_threads(args.threads)
    dataset = data.load(hp.dataset, hp.data_root, device, hp.image_size)
    stack = args.stack or cohort.default_stack(device, hp, len(members), dataset)
    print(f"cohort of {len(members)} runs on {device}, {stack} per stacked step")
    for m in members:
        provenance.discard_record(m.model_out)
    stats: list[dict] = []
    results = cohort.train_cohort(hp, args.seed, args.start_step, args.level, members, dataset,
                                  stack, stats, compile=args.compile)
    cohort.write_members(hp, members, results)
    cohort.write_records(members, stats, device, job_start, dataset)
    for m, (_, rows) in zip(members, results, strict=True):
        final = {r["split"]: r["error"] for r in rows if r["step"] == hp.steps}
        print(f"{m.model_out}: " + ", ".join(f"{s} error {e:.4f}" for s, e in final.items()))
