"""Per-round analyses of one IMP chain (paper B, Maene et al. 2021; paper C, Paul et al. 2023).

A chain is the init W_0, the trained solutions theta_L and the masks m_L of levels L = 0..N
(m_0 all True, m_{L+1} = magnitude_prune(theta_L, m_L, fraction, counting, frozen)); densities
count the ``frozen`` never-pruned weights as the chain's masks do. Everything here is a pure
function of dicts of tensors; the caller adds identifying columns (experiment, seed, k).
Norms, angles and counts are computed in float64 so that large networks do not lose precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from lmcpipe.masks import Mask, density, magnitude_prune

Weights = dict[str, torch.Tensor]

INIT_ROW = -1
"""Row label of the 'init vs. round j' rows in :func:`angle_matrix` (an int keeps the column
integer-typed when the table goes through CSV/parquet and back)."""

THRESHOLD_COLUMNS = ["level", "density_before", "density_after", "threshold", "min_kept"]
SMALL_WEIGHT_COLUMNS = ["level", "density", "overlap", "jaccard", "chance", "n_set", "n_kept"]


def _flat(weights: Weights, names: Sequence[str]) -> torch.Tensor:
    return torch.cat([weights[n].detach().flatten().cpu().double() for n in names])


def _flat_mask(mask: Mask, names: Sequence[str]) -> torch.Tensor:
    return torch.cat([mask[n].detach().flatten().cpu().bool() for n in names])


def _unflat(flat: torch.Tensor, like: Mask) -> Mask:
    out, start = {}, 0
    for name, m in like.items():
        out[name] = flat[start : start + m.numel()].reshape(m.shape)
        start += m.numel()
    return out


def angular_distance(a: Weights, b: Weights, mask: Mask) -> float:
    """2·angle(a⊙m, b⊙m)/π over all tensors of ``mask`` flattened together, in [0, 2].

    0 = same direction, 1 = orthogonal, 2 = opposite; NaN if either masked vector is zero.
    Paper B compares rounds only on the weights both keep, so callers pass m = m_i ⊙ m_j.
    """
    names = list(mask)
    keep = _flat_mask(mask, names)
    x = torch.where(keep, _flat(a, names), 0.0)
    y = torch.where(keep, _flat(b, names), 0.0)
    nx, ny = torch.linalg.vector_norm(x), torch.linalg.vector_norm(y)
    if nx == 0 or ny == 0:
        return math.nan
    cos = float(torch.dot(x, y) / (nx * ny))
    return 2.0 * math.acos(min(1.0, max(-1.0, cos))) / math.pi


def _intersect(m1: Mask, m2: Mask) -> Mask:
    return {n: m1[n] & m2[n] for n in m1}


def angle_matrix(
    solutions: dict[int, Weights], masks: dict[int, Mask], init: Weights
) -> pd.DataFrame:
    """Tidy (row, col, angle) for every ordered pair of levels plus the init row (paper B Fig 4).

    Pair (i, j) uses m_i ⊙ m_j; the rows with ``row == INIT_ROW`` (-1) compare W_0 with
    theta_j on m_j. Levels are the keys present in both ``solutions`` and ``masks``.
    """
    levels = sorted(set(solutions) & set(masks))
    rows = []
    for i in levels:
        for j in levels:
            m = _intersect(masks[i], masks[j])
            rows.append((i, j, angular_distance(solutions[i], solutions[j], m)))
    for j in levels:
        rows.append((INIT_ROW, j, angular_distance(init, solutions[j], masks[j])))
    df = pd.DataFrame(rows, columns=["row", "col", "angle"])
    return df.astype({"row": "int64", "col": "int64", "angle": "float64"})


def pruning_threshold(weights: Weights, mask_before: Mask, mask_after: Mask) -> float:
    """Magnitude cut-off of one pruning round: the largest |w| removed (paper B Fig 6).

    Removed = kept in ``mask_before`` but not in ``mask_after``; NaN if nothing was removed.
    """
    names = list(mask_before)
    removed = _flat_mask(mask_before, names) & ~_flat_mask(mask_after, names)
    mags = _flat(weights, names).abs()[removed]
    return float(mags.max()) if mags.numel() else math.nan


def smallest_kept(weights: Weights, mask: Mask) -> float:
    """Smallest |w| still kept (NaN if none); with no ties it lies above the pruning threshold."""
    names = list(mask)
    mags = _flat(weights, names).abs()[_flat_mask(mask, names)]
    return float(mags.min()) if mags.numel() else math.nan


def weight_histogram(
    weights: Weights, mask: Mask, bins: Sequence[float] | np.ndarray
) -> pd.DataFrame:
    """Tidy (bin_left, bin_right, count) of kept weights on fixed edges (paper B Fig 5).

    Edges come from the caller (see :func:`shared_edges`) so that rounds are comparable; values
    outside the edges are not counted, the last bin is closed on the right (numpy's convention).
    """
    names = list(mask)
    values = _flat(weights, names)[_flat_mask(mask, names)].numpy()
    edges = np.asarray(bins, dtype=np.float64)
    counts, _ = np.histogram(values, bins=edges)
    return pd.DataFrame(
        {"bin_left": edges[:-1], "bin_right": edges[1:], "count": counts.astype(np.int64)}
    )


def shared_edges(pairs: Sequence[tuple[Weights, Mask]], n_bins: int) -> np.ndarray:
    """``n_bins + 1`` edges symmetric about 0 covering the kept weights of all (weights, mask)."""
    top = 0.0
    for weights, mask in pairs:
        names = list(mask)
        mags = _flat(weights, names).abs()[_flat_mask(mask, names)]
        if mags.numel():
            top = max(top, float(mags.max()))
    top = top if top > 0 else 1.0
    return np.linspace(-top, top, n_bins + 1)


def smallest_set(weights: Weights, mask: Mask, fraction: float, counting: str = "prunable",
                 frozen: int = 0) -> Mask:
    """The kept weights with the smallest |w| that the next round prunes: ``mask &
    ~smallest_set(...)`` equals :func:`lmcpipe.masks.magnitude_prune`'s result exactly.

    ``prunable`` counting: ceil(fraction · kept) of them, in the same stable order (fraction may
    reach 1 here); ``open_lth``: magnitude_prune's complement within the mask.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if counting != "prunable":
        kept = magnitude_prune(weights, mask, fraction, counting, frozen)
        return {n: mask[n] & ~kept[n] for n in mask}
    names = list(mask)
    keep = _flat_mask(mask, names)
    scores = torch.where(keep, _flat(weights, names).abs(), -1.0)
    remaining = int(keep.sum())
    n_set = math.ceil(fraction * remaining)
    order = torch.sort(scores, stable=True).indices
    start = keep.numel() - remaining
    chosen = torch.zeros_like(keep)
    chosen[order[start : start + n_set]] = True
    return _unflat(chosen, {n: mask[n] for n in names})


def overlap(set_a: Mask, set_b: Mask) -> dict[str, float]:
    """Intersection size, |a|, |b|, Jaccard index and the fraction of a that lies in b.

    Jaccard is NaN when both sets are empty, ``frac_a_in_b`` when a is empty.
    """
    names = list(set_a)
    a, b = _flat_mask(set_a, names), _flat_mask(set_b, names)
    inter, size_a, size_b = int((a & b).sum()), int(a.sum()), int(b.sum())
    union = size_a + size_b - inter
    return {
        "intersection": inter,
        "size_a": size_a,
        "size_b": size_b,
        "jaccard": inter / union if union else math.nan,
        "frac_a_in_b": inter / size_a if size_a else math.nan,
    }


def new_small_weights(
    theta_L: Weights, theta_L1: Weights, mask_L1: Mask, fraction: float,
    counting: str = "prunable", frozen: int = 0,
) -> dict[str, float]:
    """Paper C: does retraining change which weights are smallest?

    before = smallest set of theta_L within m_{L+1} (what re-pruning without retraining would
    remove), after = smallest set of theta_{L+1} within m_{L+1} (what IMP removes next). Both have
    the same size, so ``overlap`` (fraction of before in after) is symmetric; ``chance`` is the
    overlap two random sets of that size would have on average, |set| / kept.
    """
    before = smallest_set(theta_L, mask_L1, fraction, counting, frozen)
    after = smallest_set(theta_L1, mask_L1, fraction, counting, frozen)
    o = overlap(before, after)
    kept = sum(int(m.sum()) for m in mask_L1.values())
    chance = o["size_a"] / kept if kept else math.nan
    return {
        "overlap": o["frac_a_in_b"],
        "jaccard": o["jaccard"],
        "chance": chance,
        "n_set": o["size_a"],
        "n_kept": kept,
    }


def chain_tables(
    init: Weights,
    solutions: dict[int, Weights],
    masks: dict[int, Mask],
    fraction: float,
    bins: int | Sequence[float] | np.ndarray = 40,
    counting: str = "prunable",
    frozen: int = 0,
) -> dict[str, pd.DataFrame]:
    """All tidy tables of one chain: "angles", "thresholds", "histograms", "small_weights".

    ``bins`` is a bin count (edges shared over all levels via :func:`shared_edges`) or explicit
    edges (to share them across chains too). "thresholds" and "small_weights" have a row for
    each level L whose successor L+1 is present; "level" there is L, the round before pruning.
    """
    levels = sorted(set(solutions) & set(masks))
    if isinstance(bins, (int, np.integer)):
        edges = shared_edges([(solutions[L], masks[L]) for L in levels], int(bins))
    else:
        edges = np.asarray(bins, dtype=np.float64)
    thresholds, hists, small = [], [], []
    for L in levels:
        hist = weight_histogram(solutions[L], masks[L], edges)
        hists.append(hist.assign(level=L, density=density(masks[L], frozen)))
        if L + 1 in masks:
            m0, m1 = masks[L], masks[L + 1]
            thr = pruning_threshold(solutions[L], m0, m1)
            low = smallest_kept(solutions[L], m1)
            thresholds.append((L, density(m0, frozen), density(m1, frozen), thr, low))
        if L + 1 in masks and L + 1 in solutions:
            row = new_small_weights(solutions[L], solutions[L + 1], masks[L + 1], fraction,
                                    counting, frozen)
            small.append({"level": L, "density": density(masks[L + 1], frozen), **row})
    hist_cols = ["level", "density", "bin_left", "bin_right", "count"]
    hist_df = (
        pd.concat(hists, ignore_index=True)[hist_cols] if hists else pd.DataFrame(columns=hist_cols)
    )
    return {
        "angles": angle_matrix(solutions, masks, init),
        "thresholds": pd.DataFrame(thresholds, columns=THRESHOLD_COLUMNS),
        "histograms": hist_df,
        "small_weights": pd.DataFrame(small, columns=SMALL_WEIGHT_COLUMNS),
    }
