"""K members of one architecture as ONE ordinary network: the grouped route of a stacked step.

``group(template, k)`` deep-copies the template and swaps every ``nn.Conv2d``, ``nn.BatchNorm2d``
and ``nn.Linear`` for a grouped counterpart that holds the k members' tensors stacked on a
leading dimension under the same names, so ``state_dict()`` keys are the template's, shapes are
``(k, *shape)`` (``num_batches_tracked`` is ``(k,)``), ``training.stacked.stack_states`` loads
straight in, and ``named_parameters()`` are the (k, ...) leaves the optimiser and masks act on.

Why not vmap (``training.stacked``'s other route): vmap's BatchNorm rule splits the affine step
into separate fp32 ops and saves more per member (issue 23: 62 % more bytes per member-step
for ResNet-20), and a vmapped ``functional_call`` re-binds every tensor each step. Here each layer
is one ordinary kernel over all members, so a member moves what a solo run moves, the template's
own ``forward`` runs unchanged and the step is plain eager/compilable code.

Activation layout, member-major channels: a conv activation is ``(B, k*C, H, W)`` with member
j's channels at ``j*C:(j+1)*C``; a flat one is ``(B, k*F)``. Then

* conv: one convolution with ``groups = k * groups`` (weight viewed ``(k*Cout, Cin/g, kh, kw)``);
* BatchNorm: one ``F.batch_norm`` over the k*C channels, weight, bias and running statistics
  viewed ``(k*C,)``, so the running statistics are updated in place per member;
* Linear: one batched matmul ``W (k, Fout, Fin) @ x^T (k, Fin, B)``. Its output ``(k, Fout, B)``
  is returned as the transposed view ``(B, k*Fout)`` (strides ``(1, B)``), and a Linear reads
  either layout as a view, so no activation or gradient is copied: the weight gradient comes out
  contiguous in the parameter's own layout and the input gradient in the input's;
* stateless layers (ReLU, pools, mean over H and W, flatten from dim 1) act per channel or keep
  member-major order, so they need nothing.

A SHARED input ``(B, C, H, W)`` or ``(B, F)`` (the same images for every member: evaluation,
interpolation) is read by the first layer as one plain conv/linear with the members' weights
concatenated on the output dimension: no k-fold copy of the input. A layer tells the two inputs
apart by their channel count (k*Cin against Cin; the same thing at k = 1).

Training input: member j's b-th example at row ``b*k + j`` of a ``(B*k, C, H, W)`` batch, which
``.view(B, k*C, H, W)`` makes member-major for free; labels ``(B, k)``. Output: logits
``(B, k*classes)``; ``member_losses`` gives each member's mean cross-entropy.

Which networks (``groupable``): the class must declare ``groupable = True`` (its ``forward``
mixes no channels across members: no channel concatenation or split, no reshape of the channel
dimension other than flattening from dim 1), and every module must be a conv/BatchNorm/Linear
of the supported kind or one of ``STATELESS`` with no parameters of its own. Dropout is left out:
no groupable network has one, and its draws would differ from a solo run's.

A grouped model must not be converted with ``.to(memory_format=torch.channels_last)`` (that
refuses its 5-D conv weights); give it channels-last input instead, which the convolutions keep.

On the CPU (``bench/grouped_vs_vmap.py``): with oneDNN the grouped convolution's forward is 10x
closer to float64 than the plain CPU kernel's (2e-7 against 2e-6; both backwards within 6e-6),
so the grouped route needs no ``torch.backends.mkldnn.flags(enabled=False)``; without oneDNN
PyTorch runs a grouped convolution as one convolution per group and a concatenation.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

STATELESS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Flatten,
)


def _stacked(t: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """k copies of ``t`` on a new leading dimension (None stays None)."""
    return None if t is None else t.detach().unsqueeze(0).repeat(k, *[1] * t.dim())


def _parameter(t: torch.Tensor | None, k: int, like: nn.Parameter | None) -> nn.Parameter | None:
    if t is None or like is None:
        return None
    return nn.Parameter(_stacked(t, k), requires_grad=like.requires_grad)


class GroupedConv2d(nn.Conv2d):
    """k members' ``nn.Conv2d`` as one convolution with ``groups = k * groups``.

    A subclass of ``nn.Conv2d`` so that code finding conv weights by type
    (``PrunableModel.weight_names``) finds these too; built on the meta device, then given the
    template's weight and bias repeated k times."""

    def __init__(self, conv: nn.Conv2d, k: int):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                         conv.padding_mode, device="meta")
        self.members = k
        self.weight = _parameter(conv.weight, k, conv.weight)
        self.bias = _parameter(conv.bias, k, conv.bias)
        self.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, g = self.members, self.groups
        w = self.weight.flatten(0, 1)  # (k*Cout, Cin/g, kh, kw): member j's filters at j*Cout
        b = None if self.bias is None else self.bias.flatten()
        if x.shape[1] == self.in_channels and k > 1:  # shared input
            if g == 1:
                return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, 1)
            x = x.repeat(1, k, 1, 1)  # a grouped conv cannot read one input k times
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, k * g)


class GroupedBatchNorm2d(nn.BatchNorm2d):
    """k members' ``nn.BatchNorm2d`` as one ``F.batch_norm`` over k*C channels.

    A subclass of ``nn.BatchNorm2d`` (so of ``_BatchNorm``), so BatchNorm found by type —
    interpolation's recompute, which calls ``reset_running_stats`` and sets ``momentum = None``
    — works unchanged. Its statistics are views of the (k, C) buffers, updated in place."""

    def __init__(self, bn: nn.BatchNorm2d, k: int):
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine,
                         bn.track_running_stats, device="meta")
        self.members = k
        self.weight = _parameter(bn.weight, k, bn.weight)
        self.bias = _parameter(bn.bias, k, bn.bias)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(self, name, _stacked(getattr(bn, name), k))
        self.train(bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        track = self.training and self.track_running_stats
        if track:
            self.num_batches_tracked.add_(1)
        cumulative = track and self.momentum is None
        use_batch = self.training or self.running_mean is None
        stats = (not self.training or self.track_running_stats) and not cumulative
        mean, var, w, b = (None if t is None else t.flatten() for t in (
            self.running_mean if stats else None, self.running_var if stats else None,
            self.weight, self.bias))
        out = F.batch_norm(x, mean, var, w, b, use_batch, self.momentum or 0.0, self.eps)
        if cumulative:
            self._cumulative_update(x)
        return out

    @torch.no_grad()
    def _cumulative_update(self, x: torch.Tensor) -> None:
        """``momentum = None``: each member's statistics become the average over its batches so
        far, weight 1/n with n that member's own count (as ``nn.BatchNorm2d``'s, without reading
        the count on the host). The batch variance is the unbiased one, in fp32."""
        k = self.members
        var, mean = torch.var_mean(x.detach().float(), dim=(0, 2, 3), correction=1)
        weight = (1.0 / self.num_batches_tracked.to(torch.float32)).unsqueeze(1)
        self.running_mean.lerp_(mean.view(k, -1).to(self.running_mean.dtype), weight)
        self.running_var.lerp_(var.view(k, -1).to(self.running_var.dtype), weight)


class GroupedLinear(nn.Linear):
    """k members' ``nn.Linear`` as one batched matmul ``W (k, Fout, Fin) @ x^T (k, Fin, B)``.

    The input ``(B, k*Fin)`` may be contiguous or the transposed view this layer returns: both
    are views of ``(k, Fin, B)``, so neither the forward nor the backward copies an activation.
    """

    def __init__(self, linear: nn.Linear, k: int):
        super().__init__(linear.in_features, linear.out_features, linear.bias is not None,
                         device="meta")
        self.members = k
        self.weight = _parameter(linear.weight, k, linear.weight)
        self.bias = _parameter(linear.bias, k, linear.bias)
        self.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.members
        if x.dim() != 2:
            raise ValueError(f"a grouped Linear takes (B, k*F) or (B, F), got {tuple(x.shape)}")
        if x.shape[1] == self.in_features and k > 1:  # shared input: W (k*Fout, Fin) @ x^T
            w = self.weight.flatten(0, 1)
            out = (w @ x.t() if self.bias is None
                   else torch.addmm(self.bias.flatten().unsqueeze(1), w, x.t()))
            return out.t()  # (B, k*Fout), the same layout as below
        xt = x.t().reshape(k, self.in_features, x.shape[0])  # a view for either layout
        if self.bias is None:
            out = torch.bmm(self.weight, xt)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(2), self.weight, xt)
        return out.view(k * self.out_features, -1).t()


GROUPED: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: GroupedConv2d, nn.BatchNorm2d: GroupedBatchNorm2d, nn.Linear: GroupedLinear,
}


def _supported(m: nn.Module) -> bool:
    """One module the grouped route can run: a conv/BatchNorm/Linear it has a counterpart for,
    or a stateless layer, or a container holding no tensors of its own."""
    if type(m) is nn.Conv2d:
        return m.padding_mode == "zeros"
    if type(m) in GROUPED:
        return True
    own = [*m.parameters(recurse=False), *m.buffers(recurse=False)]
    if type(m) is nn.Flatten:
        return m.start_dim == 1 and m.end_dim == -1
    if type(m) in STATELESS:
        return not own
    return not own and next(m.children(), None) is not None


def groupable(model: nn.Module) -> bool:
    """True when ``group`` can run this model: its class declares ``groupable = True`` and every
    module is supported (``_supported``: a leaf of another kind makes it False)."""
    return bool(getattr(type(model), "groupable", False)) and all(
        _supported(m) for m in model.modules() if m is not model) and not [
        *model.parameters(recurse=False), *model.buffers(recurse=False)]


def group(template: nn.Module, k: int) -> nn.Module:
    """A deep copy of ``template`` holding k members (each starting as the template) in grouped
    layers under the template's names (module docstring); load the members with
    ``load_state_dict(stack_states(...))``."""
    if k < 1:
        raise ValueError(f"a group needs at least one member, got k = {k}")
    if not groupable(template):
        raise ValueError(f"{type(template).__name__} cannot be grouped (grouped.groupable: its "
                         "class does not declare groupable = True or it has a layer of another "
                         "kind)")
    model = copy.deepcopy(template)
    for name, m in list(model.named_modules()):
        if type(m) in GROUPED:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, GROUPED[type(m)](m, k))
    return model


def split_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Grouped logits ``(B, k*classes)`` as ``(B, k, classes)``: a view, for either layout."""
    return logits.unflatten(1, (k, -1))


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy, shape ``(k,)``: ``logits`` ``(B, k*classes)``, ``y``
    ``(B, k)`` with member j's labels in column j (for one target shared by all members,
    ``y[:, None].expand(-1, k)``). Summed, member j's gradient is that of its own loss."""
    if y.dim() != 2:
        raise ValueError(f"member labels are (B, k), got {tuple(y.shape)}")
    k = y.shape[1]
    # (k, classes, B): a view of a grouped Linear's output, whose classes are not contiguous
    # in memory, so log-softmax reads it in place; a contiguous input is copied once
    per = logits.t().reshape(k, -1, logits.shape[0])
    return F.cross_entropy(per, y.t(), reduction="none").mean(1)
