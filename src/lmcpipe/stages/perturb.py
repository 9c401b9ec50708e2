"""``lmcpipe perturb``: perturbed pruned rewind points of one level (paper C §3.2, robustness).

One start per noise scale c, all in one job (the import of torch is most of a job's time); each
is a copy of the rewind point's record with the perturbed weights, d_L and the noise norm, so the
probe runs train from it like from any W_k. The perturbation is ``lmcpipe.probes.perturbed_start``.
"""

from __future__ import annotations

import argparse

from lmcpipe import atomic, masks, probes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rewind", required=True, help="rewind point W_k")
    p.add_argument("--mask", help="m_L (omit at level 0)")
    p.add_argument("--mask-next", required=True, help="m_{L+1}")
    p.add_argument("--scale", type=float, nargs="+", required=True,
                   help="c: noise norm in units of d_L (one start per scale)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--level", type=int, required=True, help="L")
    p.add_argument("--out", nargs="+", required=True, help="one file per scale")


def main(args: argparse.Namespace) -> None:
    if len(args.scale) != len(args.out):
        raise SystemExit(f"lmcpipe perturb: {len(args.scale)} scales need as many --out files, "
                         f"got {len(args.out)}")
    record = atomic.load_torch(args.rewind)
    names = record["prunable"]
    state = record["state_dict"]
    mask_next = masks.load(args.mask_next)
    mask_l = masks.load(args.mask) or masks.ones_like({n: state[n] for n in names})
    for scale, out in zip(args.scale, args.out, strict=True):
        start, distance, norm = probes.perturbed_start(state, names, mask_l, mask_next, scale,
                                                       args.seed, args.k, args.level)
        atomic.save_torch({**record, "state_dict": start, "distance": distance,
                           "noise_norm": norm}, out)
        print(f"c {scale:g}: d_L {distance:.6g}, noise norm {norm:.6g}")
