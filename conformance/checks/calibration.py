"""Whole-model calibration: every observer of a model's graph-mode calibration, fed the
tensors it saw, in torch and in the reference. Models: the zoo (small widths) and
`conformance.models`' random CNNs.

One `prepare_jit` of the model, with torch's RecordingObserver in every observer slot its
qconfig_dict gives (quint8 for activations, qint8 for weights, so the two stay apart),
runs the calibration batches; each recorder keeps the float tensors that observer saw (the
activations; the folded weights). torch side: the preset of the engine the oracle runs
under (`get_default_qconfig(E)`, E from `--engine`: fbgemm and x86 HistogramObserver(
reduce_range=True) and per-channel symmetric qint8 weights; qnnpack HistogramObserver without
reduce_range and a per-tensor symmetric MinMaxObserver on weights; onednn without reduce_range,
per-channel weights), fed those tensors, `calculate_qparams()` as `convert_jit` reads it (eager
and TorchScript observers compute alike: tests/test_observers.py). Reference side:
`reference.qconfig.get_default_qconfig(profile.engine)`'s observers fed the same tensors.
One recording serves both sides and every engine (two prepare_jit runs number their
observers differently; prepare_jit and a calibration run only float ops, which the quantized
engine does not touch). Calibration runs on one torch thread: at several threads, two runs can
see different float activations. Output: `[scale..., zero_point...]` over all observers, in
execution order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterator, Union

import numpy as np
import torch
from hypothesis import strategies as st
from torch.ao.quantization import QConfig, prepare_jit
from torch.ao.quantization import get_default_qconfig as torch_default_qconfig
from torch.ao.quantization.observer import RecordingObserver

from quantspec.production import zoo
from quantspec.production.environment import detect_engine, fbgemm_engine, known_deprecations_silenced, torch_threads
from quantspec.production.quantize import graph_nodes
from quantspec.reference.profile import NumericsProfile
from quantspec.reference.qconfig import get_default_qconfig

from .. import models
from . import OpCheck, register
from .observers import observer_notices_silenced

# A scripted observer's `dtype` attribute reads back as its c10::ScalarType number.
QINT8_SCALAR_TYPE = 12
# Small widths keep a case to seconds; island_net exercises qconfig_dict exclusions.
MODELS = ("cifar_resnet20", "island_net", "mobilenet_v2", "shufflenet_v2", "squeezenet", "resnet18", "regnet")


@dataclass(frozen=True)
class CalibrationCase:
    """A zoo model (`model` a name; `width`, `seed`) or a random CNN (`model` a ModelSpec),
    calibrated on `batches` normal batches of 2 images."""

    model: Union[str, models.ModelSpec]
    width: float
    seed: int
    batches: int
    input_seed: int

    def float_model(self) -> torch.nn.Module:
        if isinstance(self.model, str):
            return zoo.build(self.model, width=self.width, seed=self.seed)
        return models.build(self.model)

    def qconfig_dict(self) -> dict[str, Any]:
        return zoo.qconfig_dict(self.model) if isinstance(self.model, str) else models.qconfig_dict(self.model)

    def inputs(self) -> list[torch.Tensor]:
        size = 32 if isinstance(self.model, str) else self.model.size
        rng = np.random.default_rng(self.input_seed)
        return [
            torch.from_numpy((rng.standard_normal((2, 3, size, size)) * (1 + i)).astype(np.float32))
            for i in range(self.batches)
        ]


@st.composite
def calibration_cases(draw: st.DrawFn, model_strategy: st.SearchStrategy | None = None) -> CalibrationCase:
    """A zoo model of `MODELS` or a random CNN (or a model from `model_strategy`), its
    width and seed, 1-3 calibration batches and their seed."""
    model = draw(model_strategy or (st.sampled_from(MODELS) | models.model_specs()))
    return CalibrationCase(
        model,
        draw(st.sampled_from([0.25, 0.5])),
        draw(st.integers(0, 2**16)),
        draw(st.integers(1, 3)),
        draw(st.integers(0, 2**32 - 1)),
    )


def _prepared(case: CalibrationCase, qconfigs: dict[str, Any]) -> torch.jit.ScriptModule:
    """The calibrated prepare_jit model (one torch thread; float ops only, so the pinned engine
    is any engine's)."""
    with torch_threads(1), fbgemm_engine(), known_deprecations_silenced(), torch.no_grad():
        prepared = prepare_jit(torch.jit.script(case.float_model()), qconfigs)
        for batch in case.inputs():
            prepared(batch)
    return prepared


def _recording_qconfigs(case: CalibrationCase) -> dict[str, Any]:
    recording = QConfig(
        activation=RecordingObserver.with_args(dtype=torch.quint8),
        weight=RecordingObserver.with_args(dtype=torch.qint8),
    )
    return {key: (None if value is None else recording) for key, value in case.qconfig_dict().items()}


def attribute_path(value: Any) -> str:
    """The dotted attribute path of a TorchScript value built by a chain of prim::GetAttr
    from the graph's `self` ("" for `self` itself)."""
    names = []
    while value.node().kind() == "prim::GetAttr":
        names.append(value.node().s("name"))
        value = value.node().input()
    return ".".join(reversed(names))


def submodule(module: torch.jit.ScriptModule, path: str) -> Any:
    """`module.a.b.c` for path "a.b.c"."""
    for name in filter(None, path.split(".")):
        module = getattr(module, name)
    return module


@dataclass(frozen=True)
class Recording:
    """What one observer saw: its module path in the prepared model (e.g.
    "layer1.0.conv1._observer_1"), whether it observes a weight, and the float tensors."""

    path: str
    is_weight: bool
    tensors: tuple[np.ndarray, ...]


def recorded_observers(prepared: torch.jit.ScriptModule) -> tuple[Recording, ...]:
    """Every RecordingObserver of a calibrated prepare_jit model that saw data, in execution
    order: the order of the observer calls in the frozen prepared graph (freezing inlines
    every call and folds the `if`s on module attributes, as convert_jit's freezing does, so
    this is the order its quantize nodes keep; the recorded lists are mutated in forward, so
    freezing keeps them as attributes)."""
    frozen = torch.jit.freeze(prepared.eval())
    calls = [
        attribute_path(node.input())
        for node in graph_nodes(frozen.graph)
        if node.kind() == "prim::GetAttr" and node.s("name") == "tensor_val"  # RecordingObserver.forward
    ]
    found = []
    for path in dict.fromkeys(calls):
        recorder = submodule(prepared, path)
        tensors = recorder._c.getattr("tensor_val")
        if tensors:
            is_weight = recorder.dtype in (torch.qint8, QINT8_SCALAR_TYPE)
            found.append(Recording(path, is_weight, tuple(t.numpy().copy() for t in tensors)))
    return tuple(found)


@functools.lru_cache(maxsize=1)
def ordered_recordings(case: CalibrationCase) -> tuple[Recording, ...]:
    """The case's calibration, recorded: `recorded_observers` of one prepare_jit run."""
    return recorded_observers(_prepared(case, _recording_qconfigs(case)))


def reference(case: CalibrationCase, profile: NumericsProfile) -> np.ndarray:
    preset = get_default_qconfig(profile.engine)  # the profile names the engine; the observers' math is engine-free
    pairs = []
    with observer_notices_silenced():
        for recording in ordered_recordings(case):
            observer = (preset.weight if recording.is_weight else preset.activation).create()
            for tensor in recording.tensors:
                observer.observe(tensor)
            pairs.append(observer.calculate_qparams())
    return _flat(pairs)


def oracle(case: CalibrationCase) -> np.ndarray:
    qconfig = torch_default_qconfig(detect_engine())  # the engine the runner's oracle() pinned
    pairs = []
    with observer_notices_silenced():
        for recording in ordered_recordings(case):
            observer = (qconfig.weight if recording.is_weight else qconfig.activation)()
            for tensor in recording.tensors:
                observer(torch.from_numpy(tensor.copy()))
            scale, zero_point = observer.calculate_qparams()
            pairs.append((scale.numpy(), zero_point.numpy()))
    return _flat(pairs)


def _flat(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.asarray(s, np.float64) for s, _ in pairs] + [np.asarray(z, np.float64) for _, z in pairs])


def label(case: CalibrationCase) -> Iterator[str]:
    yield case.model if isinstance(case.model, str) else "random-model"
    yield f"{case.batches}-batch"


CHECK = register(
    OpCheck(
        name="calibration",
        op="torch.ao.quantization.prepare_jit observers",
        cases=calibration_cases(),
        reference=reference,
        torch=oracle,
        label=label,
        examples=(CalibrationCase("cifar_resnet20", 0.25, 0, 2, 0),),
        budget=0.05,
    )
)
