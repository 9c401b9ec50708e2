"""``lmcpipe train``: one run from a start point with a mask (``lmcpipe.training.single.train``).

The dense run, the rewind points W_k (``--stop-step``) and single IMP / baseline runs differ only
in their flags. The stage reads the start point, mask and references, trains with a resume file
beside ``--model-out`` (a killed job restarts where it stopped), and writes the model and the
metrics only at the end, so a half-finished run never looks finished; its provenance record
(``lmcpipe.provenance``: wall time, steps, environment) comes last, and an earlier record of the
same output is removed first, so a crash or a divergence leaves none.
"""

from __future__ import annotations

import argparse
import os
import time

from lmcpipe import devices
from lmcpipe.hparams import JsonFlag, TrainHParams, add_compile_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, action=JsonFlag, schema=TrainHParams,
                   help="TrainHParams as JSON")
    p.add_argument("--seed", type=int, required=True, help="init seed s")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--start", help="model artifact to start from (W_k)")
    start.add_argument("--reinit", action="store_true",
                       help="random-reinit baseline: fresh init seeded by (seed, k, level)")
    p.add_argument("--start-step", type=int, default=0, help="k: schedule position of the start")
    p.add_argument("--stop-step", type=int, help="stop early (rewind points); default: hp.steps")
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--mask", help="mask artifact (omit for dense)")
    p.add_argument("--order", type=int, required=True, help="data-order seed")
    p.add_argument("--copy", type=int, default=1, help="copy index within a pair")
    p.add_argument("--model-out", required=True)
    p.add_argument("--metrics-out")
    p.add_argument("--references", nargs="*", default=[],
                   help="earlier rounds' optima for the repellent/attractive term (paper B)")
    p.add_argument("--threads", type=int, default=1)
    add_compile_argument(p)
    devices.add_arguments(p)


def main(args: argparse.Namespace) -> None:
    # the heavy imports (torch) here, not at the top: the CLI imports this module to parse the
    # flags, so a bad one is refused in a fraction of a second, not after ~3 s of imports
    import torch

    from lmcpipe import atomic, csvfiles, data, masks, paths, provenance
    from lmcpipe.errors import Diverged
    from lmcpipe.training.checkpoint import model_record, run_fingerprint, start_model
    from lmcpipe.training.single import train

    job_start = time.perf_counter()
    hp = args.hparams
    device = devices.from_args(args, hp.precision)  # its slot first: pins, before torch threads
    torch.set_num_threads(args.threads)
    dataset = data.load(hp.dataset, hp.data_root, device, hp.image_size)
    model = start_model(hp, None if args.reinit else args.start, args.seed, args.start_step,
                        args.level)
    fingerprint = run_fingerprint(hp, args.seed, args.start_step, args.stop_step, args.level,
                                  args.order, args.copy, args.start, args.mask, args.references)
    resume = paths.resume_file(args.model_out)
    provenance.discard_record(args.model_out)
    stats: dict = {}
    began = time.perf_counter()
    try:
        rows = train(
            hp, model, dataset, order=args.order, copy=args.copy, start_step=args.start_step,
            stop_step=args.stop_step, mask=masks.load(args.mask), resume_path=resume,
            fingerprint=fingerprint, record=bool(args.metrics_out),
            references=[atomic.load_torch(r)["state_dict"] for r in args.references],
            stats=stats, compile=args.compile,
        )
    except Diverged as e:
        raise e.of(os.path.dirname(args.model_out) or args.model_out) from None
    wall_s = time.perf_counter() - began
    stop = hp.steps if args.stop_step is None else args.stop_step
    if args.metrics_out:
        csvfiles.save_rows(rows, ["step", "split", "loss", "error"], args.metrics_out)
    atomic.save_torch(model_record(model, hp.model, stop), args.model_out)
    if os.path.exists(resume):
        os.unlink(resume)
    provenance.write_record(args.model_out, provenance.record(
        "train", device, job_start, wall_s, **provenance.training_fields(stats, wall_s),
        **provenance.data_fields(dataset)))
    final = {r["split"]: r["error"] for r in rows if r["step"] == stop}
    print(f"trained to step {stop}: " + ", ".join(f"{s} error {e:.4f}" for s, e in final.items()))
