"""Whole-model calibration: every observer of a model's graph-mode calibration against the
reference observers fed the tensors that observer saw. Models: the zoo (small widths) and
`conformance.models`' random CNNs.

torch side: `prepare_jit` with the model's qconfig_dict (default: get_default_qconfig('fbgemm')),
calibration batches, then each observer's `calculate_qparams()` (what `convert_jit` bakes
into the int8 model). Reference side: a twin `prepare_jit` whose observers are torch's
RecordingObserver (quint8 for activations, qint8 for weights, so the two stay apart) runs
the same batches; the tensors each recorder kept (activations; the folded float weights)
go to `reference.qconfig.get_default_qconfig('fbgemm')`'s observers. Observers are matched
by (module path, name of the observed graph value): prepare_jit's `_observer_N` numbering
differs between runs. Output: `[scale..., zero_point...]` over all observers, sorted by key.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Union

import numpy as np
import torch
from hypothesis import strategies as st
from torch.ao.quantization import QConfig, prepare_jit
from torch.ao.quantization.observer import RecordingObserver

from production import zoo
from production.environment import fbgemm_engine
from reference.profile import NumericsProfile
from reference.qconfig import get_default_qconfig

from .. import models
from . import OpCheck, register

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
def calibration_cases(draw: st.DrawFn) -> CalibrationCase:
    model = draw(st.sampled_from(MODELS) | models.model_specs())
    return CalibrationCase(
        model,
        draw(st.sampled_from([0.25, 0.5])),
        draw(st.integers(0, 2**16)),
        draw(st.integers(1, 3)),
        draw(st.integers(0, 2**32 - 1)),
    )


def _prepared(case: CalibrationCase, qconfigs: dict[str, Any]) -> torch.jit.ScriptModule:
    """The calibrated prepare_jit model. One thread: on 2 threads two calibrations of the
    same shufflenet_v2 once saw different float activations (2 observers of 115 differed,
    not reproducible), so the twin runs must not depend on thread scheduling."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with fbgemm_engine(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit deprecation and reduce_range notices
            prepared = prepare_jit(torch.jit.script(case.float_model()), qconfigs)
            for batch in case.inputs():
                prepared(batch)
    finally:
        torch.set_num_threads(threads)
    return prepared


def observer_modules(module: torch.jit.ScriptModule, prefix: str = "") -> dict[tuple[str, str], Any]:
    """prepare_jit's observers keyed by (module path, debug name of the observed value)."""
    found = {}
    for node in module.graph.nodes():
        inputs = list(node.inputs())
        if node.kind() == "prim::CallMethod" and inputs[0].node().kind() == "prim::GetAttr":
            name = inputs[0].node().s("name")
            if name.startswith("_observer_"):
                found[(prefix, inputs[1].debugName())] = getattr(module, name)
    for name, child in module.named_children():
        if not name.startswith("_observer_"):
            found.update(observer_modules(child, f"{prefix}{name}."))
    return found


def _recording_qconfigs(case: CalibrationCase) -> dict[str, Any]:
    recording = QConfig(
        activation=RecordingObserver.with_args(dtype=torch.quint8),
        weight=RecordingObserver.with_args(dtype=torch.qint8),
    )
    return {key: (None if value is None else recording) for key, value in case.qconfig_dict().items()}


def reference(case: CalibrationCase, profile: NumericsProfile) -> np.ndarray:
    del profile  # observers do not depend on the numerics profile
    preset = get_default_qconfig("fbgemm")
    recorders = observer_modules(_prepared(case, _recording_qconfigs(case)))
    scales, zero_points = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in sorted(recorders):
            recorder = recorders[key]
            spec = preset.weight if recorder.dtype in (torch.qint8, QINT8_SCALAR_TYPE) else preset.activation
            observer = spec.create()
            for tensor in recorder._c.getattr("tensor_val"):
                observer.observe(tensor.numpy())
            scale, zero_point = observer.calculate_qparams()
            scales.append(scale.astype(np.float64))
            zero_points.append(zero_point.astype(np.float64))
    return np.concatenate(scales + zero_points)


def oracle(case: CalibrationCase) -> np.ndarray:
    observers = observer_modules(_prepared(case, case.qconfig_dict()))
    pairs = [observers[key].calculate_qparams() for key in sorted(observers)]
    return np.concatenate([s.numpy().astype(np.float64) for s, _ in pairs] + [z.numpy().astype(np.float64) for _, z in pairs])


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
