"""Graph-mode post-training static quantization, pinned to fbgemm.

`quantize_jit` follows `torch.ao.quantization.quantize_jit` and the graph-mode PTQ tutorial
(script or trace, eval, prepare, calibrate, convert) with three differences that make the
result reproducible: the fbgemm engine is pinned for the whole call (the default `x86`
engine silently moves conv to oneDNN at prepack time), a qconfig_dict key that names no
submodule is an error (torch ignores it), and torch's known deprecation warnings are
silenced inside the call only.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.ao.quantization import convert_jit, get_default_qconfig, prepare_jit

from .environment import ENGINE, fbgemm_engine, known_deprecations_silenced
from .qconfig_dict import QConfigDict, check_qconfig_dict

LOG = logging.getLogger(__name__)

class TracedFallbackWarning(UserWarning):
    """An nn.Module could not be scripted and was traced instead: its control flow and
    shapes are frozen to those of `example_inputs`."""


def to_torchscript(model: nn.Module, example_inputs: Sequence[Any] | None = None) -> torch.jit.ScriptModule:
    """`model` as a TorchScript module in eval mode.

    A ScriptModule is used as is. An nn.Module is scripted; if scripting fails and
    `example_inputs` (a tuple of forward arguments) is given, it is traced with them and a
    `TracedFallbackWarning` says so; without `example_inputs` the scripting error is raised.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return model.eval()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or torch.jit.ScriptModule, got {type(model).__name__}")
    model.eval()
    try:
        return torch.jit.script(model)
    except Exception as error:  # torch raises several unrelated types for unscriptable code
        if example_inputs is None:
            raise TypeError(
                f"cannot script {type(model).__name__} ({type(error).__name__}: {str(error).strip().splitlines()[0]}); "
                "pass example_inputs to trace it instead"
            ) from error
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
    message = f"could not script {type(model).__name__} ({reason}); traced it with example_inputs instead"
    LOG.warning(message)
    warnings.warn(message, TracedFallbackWarning, stacklevel=3)
    with torch.no_grad():
        return torch.jit.trace(model, tuple(example_inputs))


def quantize_jit(
    model: nn.Module,
    qconfig_dict: QConfigDict | None = None,
    calibrate: Callable[..., Any] | None = None,
    calibrate_args: Sequence[Any] = (),
    inplace: bool = False,
    debug: bool = False,
    example_inputs: Sequence[Any] | None = None,
) -> torch.jit.ScriptModule:
    """Post-training static quantization of `model` with torch's graph-mode flow, on fbgemm.

    Args:
        model: a TorchScript module, or an nn.Module to script (traced with
            `example_inputs` if scripting fails; see `to_torchscript`). Put in eval mode.
        qconfig_dict: submodule name -> QConfig or None (leave float); "" is the global
            entry, children inherit their parent's. Default: {"": get_default_qconfig("fbgemm")}.
            Keys must name submodules (a typo is a KeyError listing the closest names).
        calibrate: called as `calibrate(prepared_model, *calibrate_args)` to run
            representative data through the observers. Required.
        calibrate_args: further positional arguments of `calibrate`.
        inplace: transform the TorchScript module in place (for an nn.Module input: the
            scripted copy; the nn.Module's own weights are not changed).
        debug: torch's debug convert: float ops between quantize/dequantize pairs instead
            of quantized kernels, not frozen (the tutorial claims the same numerics as the
            real int8 model; the interpreter's comparison measures that claim).
        example_inputs: forward arguments, used only to trace when scripting fails.

    Returns:
        The converted (frozen) TorchScript module; the caller's quantized engine setting is
        restored, and packed weights stay fbgemm's whatever the engine is afterwards.
    """
    if calibrate is None or not callable(calibrate):
        raise TypeError(f"calibrate must be a function calibrate(model, *calibrate_args); got {calibrate!r}")
    with known_deprecations_silenced(), fbgemm_engine():
        scripted = to_torchscript(model, example_inputs)
        resolved = {"": get_default_qconfig(ENGINE)} if qconfig_dict is None else dict(qconfig_dict)
        check_qconfig_dict(scripted, resolved)
        prepared = prepare_jit(scripted, resolved, inplace)
        with torch.no_grad():
            calibrate(prepared, *calibrate_args)
        # As torch's _quantize_jit: convert in place (prepare already copied if needed),
        # then constant propagation and dead-code elimination on the result.
        converted = convert_jit(prepared, True, debug)
        torch._C._jit_pass_constant_propagation(converted.graph)
        torch._C._jit_pass_dce(converted.graph)
    return converted


def graph_nodes(graph: Any) -> Iterator[Any]:
    """Every node of a TorchScript graph, in order, each followed by the nodes of its
    blocks (if/loop bodies)."""
    for node in graph.nodes():
        yield node
        for block in node.blocks():
            yield from graph_nodes(block)


def node_kinds(module: torch.jit.ScriptModule) -> Counter[str]:
    """How often each node kind occurs in `module.graph`, counting nodes inside blocks
    (if/loop bodies) too."""
    return Counter(node.kind() for node in graph_nodes(module.graph))


__all__ = ["TracedFallbackWarning", "graph_nodes", "node_kinds", "quantize_jit", "to_torchscript"]
