"""Whole random models, node by node: `conformance.models`' random CNNs converted by
`production.quantize_jit`, exported, and run in torch and in the reference interpreter on
random and tie-heavy inputs.

A case is one `ModelSpec` (cases = models). One conversion and export per case serves
both sides (`_prepared`, cached): the torch side is every tensor value of the converted
graph as `production.verify.capture_intermediates` snapshots it; the reference side is
`reference.run`'s trace of the exported file. Each side flattens, for every node output
the interpreter traces, in execution order: the int_repr (quantized values, followed by
zero points and the float64 bits of the scales) or the float32 bits (float-island values),
so one differing element anywhere fails the case. For the first differing node, run
`quantspec verify` on the shrunk model (the case prints as its rebuild recipe).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

import quantspec.reference.interpreter as interpreter
from quantspec.production.bridge import from_torch
from quantspec.production.export import export
from quantspec.production.verify import capture_intermediates
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qtensor import QTensor

from .. import models
from . import OpCheck, register

INPUT_KINDS = ("random", "ties")


@functools.lru_cache(maxsize=1)
def _prepared(spec: models.ModelSpec) -> tuple[torch.jit.ScriptModule, interpreter.Model]:
    """The converted model and its exported file, loaded by the interpreter."""
    converted = models.convert(spec)
    with tempfile.TemporaryDirectory() as scratch:
        path = export(converted, Path(scratch) / "model.qsm")
        return converted, interpreter.load(path)


def _value_names(model: interpreter.Model, values: dict[str, Any]) -> list[str]:
    """The tensor outputs of the model's top-level nodes present in `values`, in execution order."""
    return [
        name for node in model.nodes for name in node.outputs if isinstance(values.get(name), (QTensor, np.ndarray))
    ]


def _flat(value: Any) -> np.ndarray:
    if isinstance(value, QTensor):
        qparams = [
            np.asarray(value.zero_point, np.int64).ravel(),
            np.asarray(value.scale, np.float64).ravel().view(np.int64),
        ]
        return np.concatenate([value.int_repr.astype(np.int64).ravel(), *qparams])
    array = np.ascontiguousarray(value)
    if array.dtype == np.float32:  # compare bits: -0.0 and NaN payloads count
        return array.view(np.int32).astype(np.int64).ravel()
    return array.astype(np.int64).ravel()


def reference(spec: models.ModelSpec, profile: NumericsProfile) -> np.ndarray:
    """Every traced value of the interpreter's runs, flattened (the file's profile rules;
    `profile` is this process's, which the file records)."""
    del profile
    converted, model = _prepared(spec)
    parts = []
    for kind in INPUT_KINDS:
        trace: dict[str, Any] = {}
        interpreter.run(model, [models.inputs(spec, kind, converted).numpy()], trace=trace)
        parts.extend(_flat(trace[name]) for name in _value_names(model, trace))
    return np.concatenate(parts)


def oracle(spec: models.ModelSpec) -> np.ndarray:
    """torch's values of the same nodes, flattened in the same order."""
    converted, model = _prepared(spec)
    parts = []
    for kind in INPUT_KINDS:
        captured = capture_intermediates(converted, [models.inputs(spec, kind, converted)])
        values = {name: _as_numpy(tensor) for name, tensor in captured.items()}
        parts.extend(_flat(values[name]) for name in _value_names(model, values))
    return np.concatenate(parts)


def _as_numpy(tensor: torch.Tensor) -> Any:
    return from_torch(tensor) if tensor.is_quantized else tensor.detach().numpy()


def label(spec: models.ModelSpec) -> Iterator[str]:
    yield f"{len(spec.blocks)}-block"
    yield from sorted({type(block).__name__.removesuffix("Spec").lower() for block in spec.blocks})
    if spec.excluded:
        yield "float-island"


def informative(spec: models.ModelSpec, output: np.ndarray) -> int:
    """All compared words carry information: a node value off by one anywhere changes them."""
    del spec
    return int(output.size)


CHECK = register(
    OpCheck(
        name="models",
        op="production.quantize_jit whole models (node by node)",
        cases=models.model_specs(),
        reference=reference,
        torch=oracle,
        label=label,
        informative=informative,
        budget=0.05,  # smoke 2 models, default 30, thorough 1000
    )
)
