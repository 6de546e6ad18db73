"""Golden vector packs: written from the checks, replayed on the reference (without torch or
Hypothesis) and on torch; corrupted, truncated or unknown content is refused naming the
file and the failed check."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("hypothesis")

from quantspec.conformance.targets import OPS, load_target
from quantspec.conformance.vectors import MANIFEST, VectorPackError, check_pack, read_pack, write_pack
from quantspec.production import cli
from quantspec.production.environment import detect_profile

PROFILE = detect_profile()
NO_TORCH = """
import sys
class Absent:  # torch and Hypothesis as if not installed
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ("torch", "hypothesis"):
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
sys.meta_path.insert(0, Absent())
from quantspec.production.cli import main
status = main(["vectors", "check", sys.argv[1], "--target", "reference"])
assert not [m for m in sys.modules if m.partition(".")[0] in ("torch", "hypothesis")]
sys.exit(status)
"""


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("vectors") / "pack"
    assert cli.main(["vectors", "write", str(directory), "--numerics", PROFILE.name, "--cases", "10"]) == 0
    return directory


def _copy(pack: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pack, tmp_path / "copy"))


def test_a_pack_holds_every_op_and_stays_small(pack: Path) -> None:
    profile, cases = read_pack(pack)
    assert profile.name == PROFILE.name and {case.call.op for case in cases} == set(OPS)
    assert sum(f.stat().st_size for f in pack.iterdir()) < 5 * 2**20
    manifest = json.loads((pack / MANIFEST).read_text())
    scale = manifest["cases"][0]["arguments"]["scale"]
    assert float.fromhex(scale["hex"]) == float(scale["decimal"])


@pytest.mark.parametrize("target", ["reference", "torch"])
def test_a_pack_round_trips_on_the_reference_and_torch(pack: Path, target: str) -> None:
    result = check_pack(pack, load_target(target, PROFILE))
    assert result.ok, result.first
    assert set(result.cases) == set(OPS) and min(result.cases.values()) >= 10  # drawn + pinned


def test_the_cli_replays_a_pack_on_the_reference_without_torch_or_hypothesis(pack: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(pack)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pack bit-exact" in done.stdout


def test_a_wrong_target_fails_the_pack(pack: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["vectors", "check", str(pack), "--target", "test_targets:HalfAwayTarget"]) == 1
    assert "quantize_per_tensor" in capsys.readouterr().out


def test_a_corrupted_array_is_refused_by_its_sha256(pack: Path, tmp_path: Path) -> None:
    copy = _copy(pack, tmp_path)
    victim = copy / "linear-0000.x.bin"
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(VectorPackError, match=r"linear-0000\.x\.bin: sha256"):
        read_pack(copy)


def test_a_truncated_array_is_refused_by_its_size_before_reading(pack: Path, tmp_path: Path, capsys) -> None:
    copy = _copy(pack, tmp_path)
    victim = copy / "conv2d-0001.weight.bin"
    victim.write_bytes(victim.read_bytes()[:-1])
    assert cli.main(["vectors", "check", str(copy), "--target", "reference"]) == 2
    assert "conv2d-0001.weight.bin: size:" in capsys.readouterr().err


@pytest.mark.parametrize("edit, failed_check", [
    (lambda m: m["cases"][0].update(extra=1), "fields"),
    (lambda m: m["cases"][0].update(op="softmax"), "op"),
    (lambda m: m.update(version=2), "format"),
    (lambda m: m["cases"][0]["arguments"]["scale"].update(decimal="0.3"), "float"),
    (lambda m: m["cases"][0]["expected"].update(file="../escape.bin"), "file name"),
])
def test_unknown_or_inconsistent_manifest_content_is_refused(pack: Path, tmp_path: Path, edit, failed_check) -> None:
    copy = _copy(pack, tmp_path)
    manifest = json.loads((copy / MANIFEST).read_text())
    edit(manifest)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(VectorPackError, match=rf"manifest\.json: {failed_check}:"):
        read_pack(copy)


def test_a_pack_is_never_written_over_another(pack: Path) -> None:
    with pytest.raises(VectorPackError, match="exists"):
        write_pack(pack, PROFILE, ["add"], 1)
