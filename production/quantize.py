"""Graph-mode post-training static quantization, on a pinned quantized engine.

`quantize_jit` follows `torch.ao.quantization.quantize_jit` and the graph-mode PTQ tutorial
(script or trace, eval, prepare, calibrate, convert); `prepare_jit` and `convert_jit` are the
tutorial's step-by-step path, and `quantize_jit` is exactly prepare + calibrate + convert. Three
differences make the result reproducible: the engine (`engine`, default fbgemm) is pinned
for each step, the prepack inside convert included (torch's default `x86` engine silently
moves conv to oneDNN at prepack time), a qconfig_dict key that names no submodule is an
error (torch ignores it), and torch's known deprecation warnings are silenced inside the
calls only.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.ao import quantization as torch_quantization

from .environment import ENGINE, known_deprecations_silenced, quantized_engine
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


def prepare_jit(
    model: nn.Module,
    qconfig_dict: QConfigDict | None = None,
    inplace: bool = False,
    example_inputs: Sequence[Any] | None = None,
    engine: str = ENGINE,
) -> torch.jit.ScriptModule:
    """`model` as TorchScript with observers inserted (torch's `prepare_jit`), under `engine`.

    Args:
        model: a TorchScript module, or an nn.Module to script (traced with
            `example_inputs` if scripting fails; see `to_torchscript`). Put in eval mode.
        qconfig_dict: submodule name -> QConfig or None (leave float); "" is the global
            entry, children inherit their parent's. Default: {"": get_default_qconfig(engine)}.
            Keys must name submodules (a typo is a KeyError listing the closest names).
        inplace: transform the TorchScript module in place (for an nn.Module input: the
            scripted copy; the nn.Module's own weights are not changed).
        example_inputs: forward arguments, used only to trace when scripting fails.
        engine: the quantized engine ("fbgemm", "qnnpack", "onednn", "x86"); give
            `convert_jit` the same one.
    """
    with known_deprecations_silenced(), quantized_engine(engine):
        scripted = to_torchscript(model, example_inputs)
        resolved = {"": torch_quantization.get_default_qconfig(engine)} if qconfig_dict is None else dict(qconfig_dict)
        check_qconfig_dict(scripted, resolved)
        return torch_quantization.prepare_jit(scripted, resolved, inplace)


def convert_jit(
    prepared: torch.jit.ScriptModule, inplace: bool = False, debug: bool = False, engine: str = ENGINE
) -> torch.jit.ScriptModule:
    """The calibrated output of `prepare_jit` converted to int8 (torch's `convert_jit`), with
    its weights prepacked under `engine` (the engine prepare_jit had).

    `debug`: torch's debug convert: float ops between quantize/dequantize pairs instead of
    quantized kernels, not frozen (the tutorial claims the same numerics as the real int8
    model; the interpreter's comparison measures that claim). Returns the converted module
    after constant propagation and dead-code elimination, as torch's `quantize_jit` does
    (its step-by-step `convert_jit` skips them), so the two paths give the same graph.
    """
    if not isinstance(prepared, torch.jit.ScriptModule):
        raise TypeError(f"convert_jit needs the TorchScript output of prepare_jit, got {type(prepared).__name__}")
    with known_deprecations_silenced(), quantized_engine(engine):
        converted = torch_quantization.convert_jit(prepared, inplace, debug)
        torch._C._jit_pass_constant_propagation(converted.graph)
        torch._C._jit_pass_dce(converted.graph)
    return converted


def quantize_jit(
    model: nn.Module,
    qconfig_dict: QConfigDict | None = None,
    calibrate: Callable[..., Any] | None = None,
    calibrate_args: Sequence[Any] = (),
    inplace: bool = False,
    debug: bool = False,
    example_inputs: Sequence[Any] | None = None,
    engine: str = ENGINE,
) -> torch.jit.ScriptModule:
    """Post-training static quantization of `model` with torch's graph-mode flow, on `engine`:
    `prepare_jit`, then `calibrate(prepared_model, *calibrate_args)` (required: it runs
    representative data through the observers, without gradients), then `convert_jit`, each
    under `engine`; the arguments are theirs.

    Returns:
        The converted (frozen) TorchScript module; the caller's quantized engine setting is
        restored, and packed weights stay `engine`'s whatever the engine is afterwards (run,
        save, load and export the model under the same engine: `environment.quantized_engine`).
    """
    if calibrate is None or not callable(calibrate):
        raise TypeError(f"calibrate must be a function calibrate(model, *calibrate_args); got {calibrate!r}")
    prepared = prepare_jit(model, qconfig_dict, inplace, example_inputs, engine)
    with known_deprecations_silenced(), quantized_engine(engine), torch.no_grad():
        calibrate(prepared, *calibrate_args)
    # Convert in place, as torch's _quantize_jit: prepare already copied if needed.
    return convert_jit(prepared, True, debug, engine)


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


def quantized_kinds(module: torch.jit.ScriptModule) -> list[str]:
    """The sorted `quantized::*` node kinds of `module` (int8 compute ops); [] for a float model."""
    return sorted(kind for kind in node_kinds(module) if kind.startswith("quantized::"))


__all__ = [
    "TracedFallbackWarning", "convert_jit", "graph_nodes", "node_kinds", "prepare_jit", "quantize_jit",
    "quantized_kinds", "to_torchscript",
]
