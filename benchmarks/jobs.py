"""Throughput at 1 and 2 jobs: `quantspec conform` (cases per second, per check and overall)
and `quantspec verify --data` (images per second).

    python benchmarks/jobs.py [--images N] [--profile smoke|default]

Set CI=true to derandomize a default run as well, so that both runs draw the same cases
(smoke always is).

verify runs ResNet-20 (production.zoo, seeded random weights) converted by `quantspec quantize`
on 32x32 images: the first N CIFAR-10 test images spread over the classes when ../shared/data
is present, else a synthetic ImageFolder tree of N random images written here (in a temporary
folder). Each measurement is one CLI run in this process; conform's seconds include starting
the worker processes (spawn: each imports torch), as a user's run would.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from quantspec.production import zoo
from quantspec.production.cli import main
from quantspec.production.environment import describe_cpu

SHARED_TEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10" / "test"


def quiet_main(argv: list[str]) -> tuple[int, str]:
    """`quantspec argv` with its stdout captured: (status, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    return status, out.getvalue()


def conform_rates(jobs: int, scratch: Path, profile: str) -> tuple[float, dict[str, float]]:
    """`conform --profile profile --jobs jobs`: (cases per wall second over every check, each
    check's cases per second of its own time)."""
    path = scratch / f"conform-{jobs}.json"
    start = time.perf_counter()
    quiet_main(["conform", "--profile", profile, "--json", str(path), "--jobs", str(jobs)])
    seconds = time.perf_counter() - start
    checks = json.loads(path.read_text())["checks"]
    per_check = {check["name"]: check["cases"] / max(check["seconds"], 1e-9) for check in checks}
    return sum(check["cases"] for check in checks) / seconds, per_check


def synthetic_folder(root: Path, count: int) -> Path:
    """`count` random 32x32 PNG images in 10 class folders."""
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / f"class{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


def converted_resnet20(scratch: Path, calib: Path) -> Path:
    """ResNet-20 (seeded random weights) quantized by `quantspec quantize` on 16 images of `calib`."""
    checkpoint = scratch / "resnet20.th"
    torch.save({"state_dict": zoo.build("cifar_resnet20").state_dict()}, checkpoint)
    out = scratch / "resnet20_int8.pt"
    status, _ = quiet_main(["quantize", str(checkpoint), "--arch", "cifar_resnet20", "--calib", str(calib),
                            "--calib-count", "16", "--out", str(out)])
    if status:
        raise SystemExit(f"quantize failed with status {status}")
    return out


def verify_rate(model: Path, data: Path, images: int, jobs: int) -> float:
    """Images per second of `verify --data --limit images --jobs jobs` (its own timing line)."""
    _, out = quiet_main(["verify", str(model), "--data", str(data), "--arch", "cifar_resnet20", "--limit",
                         str(images), "--jobs", str(jobs), "--resume", str(model.with_suffix(f".{jobs}.json"))])
    return float(re.search(r"\(([0-9.]+) images/s", out).group(1))


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images for verify --data (default 64)")
    parser.add_argument("--profile", default="smoke", help="conform's settings profile (default smoke)")
    args = parser.parse_args()
    print(f"CPU: {describe_cpu()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        data = SHARED_TEST if SHARED_TEST.is_dir() else synthetic_folder(scratch / "images", args.images)
        model = converted_resnet20(scratch, data.parent / "calib" if data == SHARED_TEST else data)
        print(f"verify --data: ResNet-20 on {args.images} images of {data}")
        overall, per_check = zip(*(conform_rates(jobs, scratch, args.profile) for jobs in (1, 2)))
        print(f"conform --profile {args.profile}, cases per second (each check's cases over its own seconds):")
        print(f"  {'check':<24} {'1 job':>9} {'2 jobs':>9}")
        for name in per_check[0]:
            print(f"  {name:<24} {per_check[0][name]:9.1f} {per_check[1][name]:9.1f}")
        print(f"  {'all (wall time)':<24} {overall[0]:9.1f} {overall[1]:9.1f}")
        for jobs in (1, 2):
            print(f"  verify --data --jobs {jobs}: {verify_rate(model, data, args.images, jobs):8.1f} images/s")


if __name__ == "__main__":
    main_benchmark()
