"""Per-round IMP analyses (paper B angles/thresholds/histograms, paper C small-weight overlap)."""

from __future__ import annotations

import math

import pytest
import torch

from lmcpipe import masks, rounds


def w(**tensors) -> dict[str, torch.Tensor]:
    return {n: torch.tensor(t, dtype=torch.float32) for n, t in tensors.items()}


def full(weights) -> dict[str, torch.Tensor]:
    return masks.ones_like(weights)


def test_angular_distance_hand_cases():
    a = w(x=[1.0, 0.0], y=[0.0])
    m = full(a)
    assert rounds.angular_distance(a, a, m) == pytest.approx(0.0, abs=1e-7)
    assert rounds.angular_distance(a, w(x=[0.0, 0.0], y=[3.0]), m) == pytest.approx(1.0)
    assert rounds.angular_distance(a, w(x=[-1.0, 0.0], y=[0.0]), m) == pytest.approx(2.0)
    # 45 degrees -> 0.5, across two tensors (global, not per layer).
    assert rounds.angular_distance(a, w(x=[1.0, 0.0], y=[1.0]), m) == pytest.approx(0.5)


def test_angular_distance_scale_invariant_and_nan_for_zero():
    g = torch.Generator().manual_seed(0)
    a = {"p": torch.randn(4, 5, generator=g), "q": torch.randn(7, generator=g)}
    b = {"p": torch.randn(4, 5, generator=g), "q": torch.randn(7, generator=g)}
    m = full(a)
    d = rounds.angular_distance(a, b, m)
    exact = {n: 8.0 * t for n, t in b.items()}  # a power of two: float32 scaling is exact
    assert rounds.angular_distance(a, exact, m) == pytest.approx(d, abs=1e-12)
    scaled = {n: 37.5 * t for n, t in b.items()}  # float32 rounding of the inputs only
    assert rounds.angular_distance(a, scaled, m) == pytest.approx(d, abs=1e-6)
    assert rounds.angular_distance(b, a, m) == pytest.approx(d, abs=1e-12)
    zero = {n: torch.zeros_like(t) for n, t in a.items()}
    assert math.isnan(rounds.angular_distance(a, zero, m))


def test_mask_restricts_the_comparison():
    a = w(x=[1.0, 2.0, 5.0])
    b = w(x=[2.0, 4.0, -100.0])  # differs only in the last coordinate
    m = {"x": torch.tensor([True, True, False])}
    assert rounds.angular_distance(a, b, m) == pytest.approx(0.0, abs=1e-7)
    assert rounds.angular_distance(a, b, full(a)) > 0.5


def chain(levels: int = 3, fraction: float = 0.3, seed: int = 0):
    """A toy IMP chain: each 'retraining' perturbs the previous solution."""
    g = torch.Generator().manual_seed(seed)
    init = {"p": torch.randn(6, 8, generator=g), "q": torch.randn(30, generator=g)}
    sols, ms = {}, {0: masks.ones_like(init)}
    theta = init
    for L in range(levels + 1):
        theta = {
            n: (t + 0.5 * torch.randn(t.shape, generator=g)) * ms[L][n] for n, t in theta.items()
        }
        sols[L] = theta
        ms[L + 1] = masks.magnitude_prune(theta, ms[L], fraction)
    return init, sols, ms


def test_angle_matrix_symmetric_zero_diagonal_with_init_row():
    init, sols, ms = chain()
    df = rounds.angle_matrix(sols, ms, init)
    assert list(df.columns) == ["row", "col", "angle"]
    assert df["row"].dtype == "int64" and df["col"].dtype == "int64"
    mat = df[df.row != rounds.INIT_ROW].pivot(index="row", columns="col", values="angle")
    assert mat.shape == (4, 4)
    assert (mat.values == mat.values.T).all()
    assert mat.values.diagonal() == pytest.approx(0.0, abs=1e-6)
    init_rows = df[df.row == rounds.INIT_ROW].set_index("col")["angle"]
    assert list(init_rows.index) == [0, 1, 2, 3]
    assert init_rows[2] == pytest.approx(rounds.angular_distance(init, sols[2], ms[2]))
    assert ((df.angle >= 0) & (df.angle <= 2)).all()


def test_pruning_threshold_known_cutoff():
    weights = w(a=[0.1, -0.9, 0.3], b=[[-0.2, 0.8], [0.5, -0.05]])
    before = full(weights)
    after = masks.magnitude_prune(weights, before, 0.4)  # ceil(0.4 * 7) = 3 removed
    assert rounds.pruning_threshold(weights, before, after) == pytest.approx(0.2)
    assert rounds.smallest_kept(weights, after) == pytest.approx(0.3)
    init, sols, ms = chain()
    for L in range(4):
        thr = rounds.pruning_threshold(sols[L], ms[L], ms[L + 1])
        for n, t in sols[L].items():
            removed = ms[L][n] & ~ms[L + 1][n]
            assert (t.abs()[removed] <= thr + 1e-7).all()
            assert (t.abs()[ms[L + 1][n]] > thr).all()
    assert math.isnan(rounds.pruning_threshold(weights, before, before))


def test_histogram_counts_and_shared_edges():
    init, sols, ms = chain()
    edges = rounds.shared_edges([(sols[L], ms[L]) for L in sols], 12)
    assert len(edges) == 13 and edges[0] == -edges[-1]
    for L in sols:
        h = rounds.weight_histogram(sols[L], ms[L], edges)
        assert list(h.columns) == ["bin_left", "bin_right", "count"]
        assert int(h["count"].sum()) == sum(int(m.sum()) for m in ms[L].values())
    h = rounds.weight_histogram(
        w(x=[-1.0, 0.2, 0.4, 1.0]), {"x": torch.tensor([1, 1, 1, 0]).bool()}, [-1.0, 0.0, 1.0]
    )
    assert h["count"].tolist() == [1, 2]


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5, 0.8])
def test_smallest_set_matches_magnitude_prune(fraction):
    init, sols, ms = chain()
    # Include ties, which magnitude_prune breaks by position.
    tied = {"p": torch.round(sols[1]["p"] * 2) / 2, "q": torch.round(sols[1]["q"] * 2) / 2}
    for weights, m in [(sols[1], ms[1]), (tied, ms[1]), (sols[2], ms[2])]:
        small = rounds.smallest_set(weights, m, fraction)
        pruned = masks.magnitude_prune(weights, m, fraction)
        for n in m:
            assert torch.equal(pruned[n], m[n] & ~small[n])
            assert not (small[n] & ~m[n]).any()


def test_overlap_self_and_disjoint():
    a = {"x": torch.tensor([True, True, False, False])}
    b = {"x": torch.tensor([False, False, True, False])}
    assert rounds.overlap(a, a)["jaccard"] == 1.0 and rounds.overlap(a, a)["frac_a_in_b"] == 1.0
    o = rounds.overlap(a, b)
    assert o["jaccard"] == 0.0 and o["frac_a_in_b"] == 0.0 and o["intersection"] == 0
    assert (o["size_a"], o["size_b"]) == (2, 1)
    half = rounds.overlap(a, {"x": torch.tensor([True, False, True, False])})
    assert half["frac_a_in_b"] == 0.5 and half["jaccard"] == pytest.approx(1 / 3)


def test_new_small_weights():
    init, sols, ms = chain()
    same = rounds.new_small_weights(sols[1], sols[1], ms[2], 0.3)
    assert same["overlap"] == 1.0 and same["jaccard"] == 1.0
    kept = sum(int(m.sum()) for m in ms[2].values())
    assert same["chance"] == pytest.approx(math.ceil(0.3 * kept) / kept)
    diff = rounds.new_small_weights(sols[1], sols[2], ms[2], 0.3)
    assert 0.0 <= diff["overlap"] <= 1.0 and diff["n_set"] == math.ceil(0.3 * kept)


def test_chain_tables():
    init, sols, ms = chain(levels=3, fraction=0.3)
    tables = rounds.chain_tables(init, sols, ms, 0.3, bins=10)
    assert set(tables) == {"angles", "thresholds", "histograms", "small_weights"}
    assert len(tables["angles"]) == 4 * 4 + 4
    thr = tables["thresholds"]
    assert thr["level"].tolist() == [0, 1, 2, 3]
    assert thr.columns[:4].tolist() == ["level", "density_before", "density_after", "threshold"]
    assert (thr["density_after"] < thr["density_before"]).all()
    assert (thr["threshold"] < thr["min_kept"]).all()
    hist = tables["histograms"]
    assert len(hist) == 4 * 10
    assert hist.groupby("level")["count"].sum().tolist() == [
        sum(int(m.sum()) for m in ms[L].values()) for L in range(4)
    ]
    small = tables["small_weights"]
    assert small["level"].tolist() == [0, 1, 2]
    assert {"overlap", "jaccard", "chance"} <= set(small.columns)
