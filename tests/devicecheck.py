"""Catch device mistakes on a machine without a GPU.

On CUDA, an operation that mixes a tensor on the GPU with a (non-scalar) tensor on the CPU
fails. On a CPU-only machine everything lives on the CPU, so such mistakes pass unnoticed until a
user runs `--device cuda`. `DeviceCheck` replays CUDA's rule while running on the CPU: it follows
every tensor through torch's function calls and tags it

- "device": the model's parameters, anything moved with `.to(device)`, anything a factory
  (`torch.zeros`, `arange`, `tensor`, ...) made with an explicit `device=`, and everything
  computed from those;
- "host": anything a factory made without `device=` (it would land on the CPU), or `.cpu()`.

An operation that mixes "device" and "host" tensors raises `DeviceMismatch`, as CUDA would.
Zero-dimensional host tensors may mix (CUDA allows CPU scalars), and indexing a device tensor
with a host index is allowed (CUDA copies the index over), as are the CPU lengths that
`pack_padded_sequence` asks for.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

FACTORIES = {
    torch.tensor, torch.as_tensor, torch.arange, torch.zeros, torch.ones, torch.full,
    torch.empty, torch.rand, torch.randn, torch.randint, torch.eye, torch.linspace,
    torch.randperm,
}
LIKE = {torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like, torch.rand_like,
        torch.randn_like, torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_full,
        torch.Tensor.new_empty, torch.Tensor.new_tensor}
INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
# Operations that take some arguments on the CPU by design, on every device.
HOST_ARGUMENTS = {"_pack_padded_sequence"}


class DeviceMismatch(AssertionError):
    pass


class DeviceCheck(TorchFunctionMode):
    def __init__(self, *modules: torch.nn.Module):
        super().__init__()
        self.tags = WeakTensorKeyDictionary()
        self.calls = 0
        for module in modules:
            for t in [*module.parameters(), *module.buffers()]:
                self.tags[t] = "device"

    def tag(self, t: torch.Tensor) -> str | None:
        return self.tags.get(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.calls += 1
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func in FACTORIES:
            result = "device" if kwargs.get("device") is not None else "host"
        elif func in LIKE:
            result = "device" if kwargs.get("device") is not None else self.tag(inputs[0])
        elif func is torch.Tensor.to and _names_a_device(args[1:], kwargs):
            result = "device"
        elif func is torch.Tensor.cpu:
            result = "host"
        else:
            tags = {self.tag(t) for t in inputs if t.dim() > 0 or self.tag(t) == "device"}
            if func in INDEXING:
                tags = {self.tag(args[0])} | ({self.tag(args[2])} if len(args) > 2 and
                                              isinstance(args[2], torch.Tensor) else set())
            if {"device", "host"} <= tags and getattr(func, "__name__", "") not in HOST_ARGUMENTS:
                raise DeviceMismatch(f"{getattr(func, '__name__', func)} mixes a tensor on the "
                                     f"model's device with one left on the CPU")
            result = "device" if "device" in tags else ("host" if "host" in tags else None)
        if result is not None:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.tags[t] = result
        return out


def _names_a_device(args, kwargs) -> bool:
    if kwargs.get("device") is not None:
        return True
    return any(isinstance(a, (torch.device, str)) for a in args) or any(
        isinstance(a, torch.Tensor) for a in args)
