"""The counters of ``bench/step_profile.py`` on toy steps whose answers are known by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

spec = importlib.util.spec_from_file_location(
    "step_profile", Path(__file__).resolve().parents[1] / "bench" / "step_profile.py")
step_profile = importlib.util.module_from_spec(spec)
sys.modules["step_profile"] = step_profile  # its dataclass looks itself up there
spec.loader.exec_module(step_profile)


def test_kernel_ops_count_leaves_not_views_and_keep_the_progress_line_apart():
    a, w = torch.randn(8, 8), torch.randn(4, 2, 3, 3)
    x = torch.randn(2, 2, 6, 6)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        b = a.t().unsqueeze(0).squeeze(0)  # views: nothing
        c = a.mm(b).relu()  # mm (its resolve_conj children are excluded), relu's clamp_min
        torch.add(c.view(-1), c.view(-1))  # add; the views are nothing
        F.conv2d(x, w)  # one, whatever the CPU runs inside it
        with record_function(step_profile.PROGRESS):
            a * a  # the progress line's op
    outside, inside = step_profile.kernel_ops(prof.events())
    assert dict(outside) == {"aten::mm": 1, "aten::clamp_min": 1, "aten::add": 1,
                             "aten::_convolution": 1}
    assert dict(inside) == {"aten::mul": 1}


def test_traced_bytes_sum_inputs_and_outputs_and_skip_views():
    with torch.device("meta"):
        a, b = torch.empty(1000), torch.empty(1000)
    counter = step_profile.TracedBytes()
    with counter:
        torch.add(a.view(10, 100), b.view(10, 100))
    assert counter.total == 3 * 4000


def test_grouped_conv_flops_are_k_members_flops():
    """Forward and backward of a conv with groups = 4 is 4 members' convs, FLOP for FLOP."""
    def flops(k: int) -> int:
        x = torch.randn(2, 3 * k, 8, 8, requires_grad=True)
        w = torch.randn(5 * k, 3, 3, 3, requires_grad=True)
        counter = FlopCounterMode(display=False, custom_mapping={
            torch.ops.aten.convolution_backward: step_profile.grouped_conv_backward_flops})
        with counter:
            F.conv2d(x, w, groups=k).sum().backward()
        return counter.get_total_flops()

    assert flops(4) == 4 * flops(1) > 0
