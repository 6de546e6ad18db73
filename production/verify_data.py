"""`quantspec verify OUT.pt --data DIR`: node-by-node verification on every image of a folder.

Each image (a batch of one) goes through torch and the reference interpreter and every value
of the graph is compared (`verify.verify_loaded`). The images are cut into chunks of
`CHUNK_IMAGES`; a chunk is the unit of work (`verify_chunk`, run here, in N processes or on
Dask through `parallel.ordered_map`) and of progress: after each chunk the run's state (the
chunks done and what they found) is written atomically, so an interrupted run resumes from
it. Chunk results are merged in chunk order, and repro files are written at the end from the
merged result (the earliest image where a node is the first mismatch), so a report does not
depend on how many jobs ran nor on how often the run was resumed.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from tqdm import tqdm

import quantspec.reference.interpreter as interpreter

from .data import EvalTransform, ImageFolder
from .environment import ENGINE, silenced_in_workers
from .export import exported_model
from .outputs import write_text_atomically
from .parallel import ordered_map
from .verify import BIT_EXACT, FLOAT_ORDER_UNSPECIFIED, MISMATCH, beside_model, verify_loaded, write_repro

# Images per chunk: small enough that Ctrl-C loses little work and the state is written
# every few seconds, large enough that a worker's per-chunk overhead stays negligible.
CHUNK_IMAGES = 8
STATE_FORMAT = "quantspec-verify-data-state/1"
PathLike = Union[str, Path]


@dataclass(frozen=True)
class Chunk:
    """One work item: images `start` to `stop` (exclusive) of the folder's sample list."""

    model: str
    engine: str
    data: str
    transform: EvalTransform
    limit: Optional[int]
    start: int
    stop: int
    threads: int = 1


@dataclass
class DataReport:
    """What a `--data` run found. `nodes`: mismatching value name -> {kind, order (position in
    execution order), images (how many differ there), first_image, first_cause (the earliest
    image where it is the first mismatch, or None)}; `repro`: value name -> repro file;
    `resumed`: the images a resumed state had done before this call."""

    images: int
    total: int
    resumed: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    repro: dict[str, Path] = field(default_factory=dict)
    sample_paths: list[Path] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """MISMATCH if any image mismatches, else FLOAT_ORDER_UNSPECIFIED if any image is only
        float-order different, else BIT_EXACT."""
        for verdict in (MISMATCH, FLOAT_ORDER_UNSPECIFIED):
            if self.verdicts.get(verdict):
                return verdict
        return BIT_EXACT

    def format(self) -> str:
        """Images checked and their verdicts, then every mismatching node (execution order of its
        first image) with the image and repro file."""
        counts = ", ".join(f"{name} {self.verdicts[name]}" for name in sorted(self.verdicts))
        lines = [f"images checked: {self.images} of {self.total} ({counts})"]
        if self.verdict == BIT_EXACT:
            lines.append("bit-exact: every value of every image")
            return "\n".join(lines)
        lines.append(f"{self.verdict.upper()}: {len(self.nodes)} differing values")
        for name, node in sorted(self.nodes.items(), key=lambda item: (item[1]["first_image"], item[1]["order"])):
            lines.append(f"  %{name} = {node['kind']}: differs in {node['images']} images, first "
                         f"{self.sample_paths[node['first_image']]}")
            if name in self.repro:
                lines.append(f"    repro file: {self.repro[name]}")
        return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def _loaded(model_path: str, engine: str) -> tuple[torch.jit.ScriptModule, interpreter.Model]:
    """The TorchScript model and its exported reference model, once per process."""
    from .io import load as load_scripted

    converted = load_scripted(model_path, engine)
    return converted, exported_model(converted, engine)


@functools.lru_cache(maxsize=1)
def _images(data: str, transform: EvalTransform, limit: Optional[int]) -> ImageFolder:
    return ImageFolder(data, transform, limit=limit)


def _image(chunk: Chunk, index: int) -> torch.Tensor:
    image, _ = _images(chunk.data, chunk.transform, chunk.limit)[index]
    return torch.from_numpy(image[None])


@silenced_in_workers
def verify_chunk(chunk: Chunk) -> dict[str, Any]:
    """Verify the chunk's images; a JSON-ready result: {"verdicts": {verdict: images},
    "nodes": {name: {...}}} (the fields of `DataReport.nodes`)."""
    converted, model = _loaded(chunk.model, chunk.engine)
    verdicts: dict[str, int] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for index in range(chunk.start, chunk.stop):
        report, _, _ = verify_loaded(converted, model, [_image(chunk, index)], chunk.threads, chunk.engine)
        verdicts[report.verdict] = verdicts.get(report.verdict, 0) + 1
        for order, check in enumerate(report.checks):
            if check.equal:
                continue
            cause = index if check is report.first_mismatch else None
            found = {"kind": check.kind, "order": order, "images": 1, "first_image": index, "first_cause": cause}
            _merge_node(nodes, check.name, found)
    return {"verdicts": verdicts, "nodes": nodes}


def _merge_node(nodes: dict[str, dict[str, Any]], name: str, found: dict[str, Any]) -> None:
    """Add `found` (one node's mismatches over some images) into `nodes`; earlier images win."""
    known = nodes.get(name)
    if known is None:
        nodes[name] = dict(found)
        return
    known["images"] += found["images"]
    if found["first_image"] < known["first_image"]:
        known.update(first_image=found["first_image"], order=found["order"])
    causes = [c for c in (known["first_cause"], found["first_cause"]) if c is not None]
    known["first_cause"] = min(causes) if causes else None


def verify_data(
    model_path: PathLike,
    data_dir: PathLike,
    transform: EvalTransform,
    limit: Optional[int] = None,
    state_path: Optional[PathLike] = None,
    resume: bool = False,
    jobs: int = 1,
    scheduler: Optional[str] = None,
    num_threads: int = 1,
    engine: str = ENGINE,
    progress: bool = False,
) -> tuple[DataReport, float]:
    """Verify `model_path` node by node on the images of `data_dir` (`limit` of them, evenly
    spread, if given); return the report and the seconds this call spent on images.

    The state goes to `state_path` (default `<model>.verify-state.json`) after every chunk;
    `resume` continues from it (ValueError if it belongs to another run). Chunks run in `jobs`
    processes or on the Dask `scheduler`; repro files go beside the model,
    `<model>.repro-<value>.qsm`. `progress`: a tqdm bar on stderr.
    """
    model, data = str(Path(model_path).resolve()), str(Path(data_dir).resolve())
    images = _images(data, transform, limit)
    chunks = [Chunk(model, engine, data, transform, limit, start, min(start + CHUNK_IMAGES, len(images)), num_threads)
              for start in range(0, len(images), CHUNK_IMAGES)]
    state_path = Path(state_path) if state_path else beside_model(Path(model_path), ".verify-state.json")
    identity = {"format": STATE_FORMAT, "model": model, "data": data, "limit": limit, "images": len(images),
                "chunk_images": CHUNK_IMAGES, "engine": engine, "transform": repr(transform)}
    state = _read_state(state_path, identity) if resume and state_path.exists() else dict(identity, chunks={})
    pending = [chunk for chunk in chunks if str(chunk.start) not in state["chunks"]]
    start = time.perf_counter()
    try:
        with tqdm(total=len(images), initial=len(images) - sum(c.stop - c.start for c in pending), unit="img",
                  desc="verify", disable=not progress, leave=False) as bar:
            for chunk, result in zip(pending, ordered_map(verify_chunk, pending, jobs, scheduler)):
                state["chunks"][str(chunk.start)] = result
                write_text_atomically(state_path, json.dumps(state))
                bar.update(chunk.stop - chunk.start)
    except KeyboardInterrupt:
        print(f"progress saved in {state_path}: continue with --resume {state_path}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - start
    report = _merged(state, chunks, images)
    report.resumed = report.images - sum(chunk.stop - chunk.start for chunk in pending)
    report.repro = _write_repros(report, chunks[0], Path(model_path)) if report.nodes else {}
    return report, seconds


def _read_state(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The state at `path` if it is one of this run (same model, data, limit, ...)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--resume {path}: not a verify state file ({error})") from error
    if not isinstance(state, dict) or not isinstance(state.get("chunks"), dict):
        raise ValueError(f"--resume {path}: not a verify state file")
    differing = [key for key, value in identity.items() if state.get(key) != value]
    if differing:
        raise ValueError(f"--resume {path}: the state of another run (its {', '.join(differing)} differ)")
    return state


def _merged(state: dict[str, Any], chunks: list[Chunk], images: ImageFolder) -> DataReport:
    """The chunk results of `state` merged in chunk order."""
    report = DataReport(images=0, total=len(images), sample_paths=[path for path, _ in images.samples])
    for chunk in chunks:
        result = state["chunks"].get(str(chunk.start))
        if result is None:
            continue
        report.images += chunk.stop - chunk.start
        for verdict, count in result["verdicts"].items():
            report.verdicts[verdict] = report.verdicts.get(verdict, 0) + count
        for name, found in result["nodes"].items():
            _merge_node(report.nodes, name, found)
    return report


def _write_repros(report: DataReport, any_chunk: Chunk, model_path: Path) -> dict[str, Path]:
    """For each node that was an image's first mismatch: rerun its earliest such image here and
    write the single-node repro file."""
    repros = {}
    for name, node in report.nodes.items():
        if node["first_cause"] is None:
            continue
        converted, model = _loaded(any_chunk.model, any_chunk.engine)
        _, trace, captured = verify_loaded(converted, model, [_image(any_chunk, node["first_cause"])],
                                           any_chunk.threads, any_chunk.engine)
        target = beside_model(model_path, f".repro-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.qsm")
        repros[name] = write_repro(model, name, trace, captured, target)
    return repros
