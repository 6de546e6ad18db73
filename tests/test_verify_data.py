"""`quantspec verify OUT.pt --data DIR`: every image checked, --limit, resuming from a partial
state file, --jobs 2 and a Dask LocalCluster giving the serial report; `quantspec conform
--jobs 2` giving the serial report (the same cases, elements and labels per check)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL.Image")
from PIL import Image

from quantspec.production.cli import main
from quantspec.production.verify_data import CHUNK_IMAGES, _merge_node

IMAGES_PER_CLASS = 9  # 18 images: chunks of 8, 8 and 2


@pytest.fixture(scope="module")
def files(tiny_quantized: Path) -> Path:
    """tiny_int8.pt (recording input shape 3x16x16, tests/conftest.py) and data/<class>/<n>.png,
    2 x 9 16x16 images."""
    root = tiny_quantized
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (root / "data" / name).mkdir(parents=True)
        for index in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "data" / name / f"{index}.png")
    return root


def _verify(files: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    """Exit status and the report (stdout without the timing line, which differs run to run)."""
    status = main(["verify", str(files / "tiny_int8.pt"), "--data", str(files / "data"), *options])
    lines = capsys.readouterr().out.splitlines()
    assert " images/s, " in lines[-1]
    return status, "\n".join(lines[:-1])


def test_every_image_is_checked(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, report = _verify(files, capsys)
    assert status == 0
    assert report == "images checked: 18 of 18 (bit-exact 18)\nbit-exact: every value of every image"


def test_limit_spreads_over_the_classes(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, report = _verify(files, capsys, "--limit", "5")
    assert status == 0 and report.startswith("images checked: 5 of 5 (bit-exact 5)")


def test_resume_checks_only_the_missing_chunks(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = files / "state.json"
    _, full = _verify(files, capsys, "--resume", str(state))
    document = json.loads(state.read_text())
    assert sorted(document["chunks"]) == ["0", "16", "8"]
    del document["chunks"]["8"]  # as if interrupted during the second chunk
    state.write_text(json.dumps(document))
    assert main(["verify", str(files / "tiny_int8.pt"), "--data", str(files / "data"), "--resume", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(full) and f"\n{CHUNK_IMAGES} images in " in out
    # A state of another run (here another --limit) is refused, not merged.
    assert main(["verify", str(files / "tiny_int8.pt"), "--data", str(files / "data"), "--resume", str(state),
                 "--limit", "3"]) == 2
    assert "the state of another run (its limit, images differ)" in capsys.readouterr().err


def test_two_jobs_give_the_serial_report(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serial = _verify(files, capsys)
    assert _verify(files, capsys, "--jobs", "2") == serial


def test_options_of_data_need_data(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(files / "tiny_int8.pt"), "--jobs", "2"]) == 2
    assert "--jobs: go with --data" in capsys.readouterr().err


def test_node_merge_does_not_depend_on_the_split() -> None:
    found = [("x", {"kind": "k", "order": 3, "images": 1, "first_image": i, "first_cause": c})
             for i, c in ((5, None), (2, None), (7, 7), (4, 4))]
    together: dict = {}
    for name, entry in found:
        _merge_node(together, name, entry)
    halves: list[dict] = [{}, {}]
    for position, (name, entry) in enumerate(found):
        _merge_node(halves[position % 2], name, entry)
    merged: dict = {}
    for half in halves:
        _merge_node(merged, "x", half["x"])
    assert together == merged == {"x": {"kind": "k", "order": 3, "images": 4, "first_image": 2, "first_cause": 4}}


def _conform_verdicts(capsys: pytest.CaptureFixture[str], tmp_path: Path, *options: str) -> list[dict]:
    path = tmp_path / f"conform{len(options)}.json"
    assert main(["conform", "--profile", "smoke", "--ops", "add", "relu", "--json", str(path), *options]) == 0
    capsys.readouterr()
    # Everything but the timing: the same cases are drawn in any process (settings.load_every_module).
    return [{k: v for k, v in c.items() if k != "seconds"} for c in json.loads(path.read_text())["checks"]]


def test_conform_two_jobs_give_the_serial_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    serial = _conform_verdicts(capsys, tmp_path)
    assert [check["name"] for check in serial] == ["add", "relu"]
    assert _conform_verdicts(capsys, tmp_path, "--jobs", "2") == serial


def test_dask_local_cluster_gives_the_serial_results(
    files: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    serial = _verify(files, capsys)
    conform_serial = _conform_verdicts(capsys, tmp_path)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        assert _verify(files, capsys, "--scheduler", cluster.scheduler_address) == serial
        assert _conform_verdicts(capsys, tmp_path, "--scheduler", cluster.scheduler_address) == conform_serial
