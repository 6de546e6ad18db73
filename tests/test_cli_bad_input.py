"""Hostile and broken input to the `quantspec` CLI (issue 14): every invocation in the table
exits with status 2 and one line on stderr, `quantspec <verb>: ...`, never a traceback, and
fails before any long work (each runs in well under a second on the tiny files of
tests/cli_files.py)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Callable

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL.Image")

from cli_files import SHAPE, write_declared_size_png, write_tiny_files

from quantspec.production import zoo
from quantspec.production.cli import main

Argv = Callable[[Path], list[str]]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny float model, images, its int8 model (int8.pt) and the broken files the table uses."""
    root = write_tiny_files(tmp_path_factory.mktemp("bad_input"))
    assert main(["quantize", str(root / "tiny.pt"), "--calib", str(root / "imgs"), "--out", str(root / "int8.pt"),
                 "--input-shape", *SHAPE]) == 0
    (root / "truncated.pt").write_bytes((root / "int8.pt").read_bytes()[:3000])
    _unknown_op_copy(root / "tiny.pt", root / "unknown_op.pt")
    for name, image in (("corrupt", None), ("bomb", (20_000, 20_000)), ("big", (10_000, 10_000))):
        folder = root / name / "a"
        folder.mkdir(parents=True)
        if image is None:
            (folder / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
        else:
            write_declared_size_png(folder / "x.png", *image)
    for name, config in (("number", {"": 5}), ("list", {"fc": ["fbgemm"]}), ("object", {"": {"preset": "fbgemm"}})):
        (root / f"qconfig_{name}.json").write_text(json.dumps(config))
    torch.save({"state_dict": zoo.build("cifar_resnet20").state_dict()}, root / "resnet20.th")
    torch.save({"state_dict": _PickledCall()}, root / "pickled_call.th")
    (root / "garbage.th").write_bytes(bytes(range(256)) * 8)
    return root


class _PickledCall:
    """Unpickles as a call of `len`: what a crafted checkpoint does with a harmful function."""

    def __reduce__(self) -> tuple:
        return len, ([],)


def _unknown_op_copy(source: Path, target: Path) -> None:
    """A TorchScript file whose code calls an op torch does not have: torch.jit.load fails compiling it."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for entry in original.namelist():
            data = original.read(entry)
            if entry.endswith(".py") and b"torch.flatten(" in data:
                data = data.replace(b"torch.flatten(", b"torch.flattenx(")
            copy.writestr(entry, data)


def quantize(*extra: str) -> Argv:
    """`quantspec quantize tiny.pt --calib imgs --out out.pt --input-shape 2 3 16 16`, then `extra`
    (a later --calib, --out or --input-shape replaces the default one)."""
    return lambda root: ["quantize", str(root / "tiny.pt"), "--calib", str(root / "imgs"), "--out",
                         str(root / "out.pt"), "--input-shape", *SHAPE, *(_in(root, word) for word in extra)]


def _in(root: Path, word: str) -> str:
    """`@name` stands for root/name."""
    return str(root / word[1:]) if word.startswith("@") else word


def argv(*words: str) -> Argv:
    return lambda root: [_in(root, word) for word in words]


BAD = {
    "quantize: missing model": (argv("quantize", "@nope.pt", "--calib", "@imgs", "--out", "@out.pt"),
                                "no model file at"),
    "quantize: missing calib folder": (quantize("--calib", "@no_images"), "does not exist"),
    "quantize: output folder missing": (quantize("--out", "@missing/out.pt"), "folder"),
    "quantize: overwrite its own input": (quantize("--out", "@tiny.pt"), "is also an input of this run"),
    "quantize: zero batch": (quantize("--input-shape", "0", "3", "16", "16"), "expected positive sizes"),
    "quantize: huge input shape": (quantize("--input-shape", "2", "3", "100000", "100000"),
                                   "more than the limit of 67108864"),
    "quantize: corrupt image in calib": (quantize("--calib", "@corrupt"), "cannot read image"),
    "quantize: PNG decompression bomb": (quantize("--calib", "@bomb"), "could be decompression bomb"),
    "quantize: PNG above Pillow's limit": (quantize("--calib", "@big"), "could be decompression bomb"),
    "quantize: qconfig value a number": (quantize("--qconfig", "@qconfig_number.json"),
                                         "entry '': a number 5 is not a qconfig"),
    "quantize: qconfig value a list": (quantize("--qconfig", "@qconfig_list.json"), "an array ['fbgemm']"),
    "quantize: qconfig value an object": (quantize("--qconfig", "@qconfig_object.json"), "an object"),
    "quantize: checkpoint of another architecture": (
        argv("quantize", "@resnet20.th", "--arch", "cifar_resnet56", "--calib", "@imgs", "--out", "@out.pt"),
        "does not hold cifar_resnet56 weights: 180 missing keys"),
    "quantize: checkpoint pickling a call": (
        argv("quantize", "@pickled_call.th", "--arch", "cifar_resnet20", "--calib", "@imgs", "--out", "@out.pt"),
        "torch.load(weights_only=True) reads: WeightsUnpickler error: Unsupported global: GLOBAL len"),
    "quantize: checkpoint of random bytes": (
        argv("quantize", "@garbage.th", "--arch", "cifar_resnet20", "--calib", "@imgs", "--out", "@out.pt"),
        "is not a checkpoint of tensors"),
    "quantize: unloadable TorchScript": (argv("quantize", "@unknown_op.pt", "--calib", "@imgs", "--out", "@out.pt"),
                                         "Unknown builtin op: aten::flattenx"),
    "export: overwrite its own input": (argv("export", "@int8.pt", "@int8.pt"), "is also an input of this run"),
    "export: input shape of zeros": (argv("export", "@int8.pt", "@m.qsm", "--input-shape", "0", "0", "0"),
                                     "expected positive sizes"),
    "export: huge input shape": (argv("export", "@int8.pt", "@m.qsm", "--input-shape", "3", "100000", "100000"),
                                 "more than the limit"),
    "export: output folder missing": (argv("export", "@int8.pt", "@missing/m.qsm"), "folder"),
    "export: truncated .pt": (argv("export", "@truncated.pt", "@m.qsm"), "not a readable TorchScript model file"),
    "export: truncated .pt, shape given": (argv("export", "@truncated.pt", "@m.qsm", "--input-shape", "3", "16", "16"),
                                           "PytorchStreamReader failed"),
    "export: unloadable TorchScript": (argv("export", "@unknown_op.pt", "@m.qsm", "--input-shape", "3", "16", "16"),
                                       "Unknown builtin op: aten::flattenx. Here are some suggestions"),
    "verify: float model": (argv("verify", "@tiny.pt", "--random", "1", "--input-shape", "3", "16", "16"),
                            "has no quantized nodes"),
    "verify: missing model": (argv("verify", "@nope.pt"), "no TorchScript model file"),
    "verify: truncated .pt": (argv("verify", "@truncated.pt", "--input-shape", "3", "16", "16"),
                              "is not a TorchScript model torch can load"),
    "verify: unloadable TorchScript": (argv("verify", "@unknown_op.pt", "--input-shape", "3", "16", "16"),
                                       "(code/__torch__/"),
    "verify: zero random images": (argv("verify", "@int8.pt", "--random", "0"), "expected a positive count"),
    "verify: huge random batch": (argv("verify", "@int8.pt", "--random", "100000", "--input-shape", "3", "64", "64"),
                                  "more than the limit"),
    "inspect: truncated int8 model": (argv("inspect", "@truncated.pt", "--float", "@tiny.pt", "--data", "@imgs"),
                                      "truncated.pt"),
    "inspect: json folder missing": (
        argv("inspect", "@int8.pt", "--float", "@tiny.pt", "--data", "@imgs", "--json", "@missing/r.json"), "folder"),
    "inspect: plot overwrites an input": (
        argv("inspect", "@int8.pt", "--float", "@tiny.pt", "--data", "@imgs", "--plot", "@tiny.pt"),
        "is also an input"),
    "compare: out-dir parent missing": (
        argv("compare", "--model", "@resnet20.th", "--arch", "cifar_resnet20", "--data", "@imgs", "--calib", "@imgs",
             "--out-dir", "@missing/deeper"), "folder"),
    "compare: zero latency repeats": (
        argv("compare", "--model", "@resnet20.th", "--arch", "cifar_resnet20", "--data", "@imgs", "--calib", "@imgs",
             "--latency-repeats", "0"), "--latency-repeats 0: expected a positive count"),
    "conform: json folder missing": (
        argv("conform", "--profile", "smoke", "--ops", "relu", "--json", "@missing/c.json"), "folder"),
    "conform: unknown --ops name": (argv("conform", "--profile", "smoke", "--ops", "relux"),
                                    "unknown conformance check(s) ['relux']"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_status_2(root: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    build, expected = BAD[case]
    words = build(root)
    assert main(words) == 2, case
    captured = capsys.readouterr()
    assert captured.err.startswith(f"quantspec {words[0]}: ") and captured.err.endswith("\n")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert expected in captured.err
    assert not (root / "missing").exists() and not (root / "out.pt").exists() and not (root / "m.qsm").exists()


def test_debug_shows_the_traceback_then_the_line(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "verify", str(root / "tiny.pt"), "--input-shape", "3", "16", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.splitlines()[-1].startswith("quantspec verify: ")


def test_an_internal_error_names_itself_and_points_at_debug(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from quantspec.production import verify

    def broken(*args: object, **kwargs: object) -> int:
        return 1 // 0

    monkeypatch.setattr(verify, "verify_command", broken)
    assert main(["verify", str(root / "int8.pt")]) == 2
    assert capsys.readouterr().err == (
        "quantspec verify: internal error: ZeroDivisionError: integer division or modulo by zero "
        "(rerun as `quantspec --debug verify ...` for the traceback)\n"
    )


def test_an_interrupted_write_leaves_no_partial_output(tmp_path: Path) -> None:
    from quantspec.production.outputs import atomic_output

    target = tmp_path / "model.qsm"
    target.write_text("the previous file")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as temporary:
            temporary.write_text("half a new fi")
            raise KeyboardInterrupt
    assert target.read_text() == "the previous file" and [p.name for p in tmp_path.iterdir()] == ["model.qsm"]
    with atomic_output(target) as temporary:
        temporary.write_text("the new file")
    assert target.read_text() == "the new file" and [p.name for p in tmp_path.iterdir()] == ["model.qsm"]

