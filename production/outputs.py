"""Output files: checked before the long work starts, written atomically.

A run that fails at its end because the output folder is missing wastes minutes, and a run
stopped half way (Ctrl-C, a crash, a full disk) must not leave a half-written model where
a good one is expected. So the CLI checks every output path first (`check_output_file`,
`check_output_dir`), and writers write a temporary file in the target's folder and rename
it over the target (`atomic_output`): readers see the old file or the new one, never a part.

Standard library only: the CLI imports this before anything heavy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterable, Iterator, Union

PathLike = Union[str, os.PathLike]


def check_output_file(path: PathLike, what: str, inputs: Iterable[PathLike] = ()) -> Path:
    """`path` as a Path if a file can be written there: its folder exists and is writable, it is
    not a folder, and it is none of `inputs` (the files the same run reads).

    Raises FileNotFoundError, PermissionError, IsADirectoryError or ValueError, each naming
    `what` (the option, e.g. "--out") and the path.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{what} {target}: is a folder; give a file name")
    _check_writable_folder(target.parent, f"{what} {target}")
    for source in inputs:
        if same_file(target, source):
            raise ValueError(f"{what} {target}: is also an input of this run; writing it would destroy the input")
    return target


def check_output_dir(path: PathLike, what: str) -> Path:
    """`path` as a Path if outputs can go into it: an existing writable folder, or a new one
    whose parent folder exists and is writable (the run creates it)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder}: exists and is not a folder")
    _check_writable_folder(folder if folder.exists() else folder.parent, f"{what} {folder}")
    return folder


def _check_writable_folder(folder: Path, where: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{where}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{where}: folder {folder} is not writable")


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name one file (links and relative spellings included)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return Path(a).resolve() == Path(b).resolve()


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same folder, same suffix, so writers that choose the
    format by suffix still do) for the block to write; renamed over `path` when the block
    ends normally, removed when it raises (KeyboardInterrupt included)."""
    target = Path(path)
    # Not mkstemp: its 0600 file would keep those permissions after the rename.
    temporary = target.with_name(f".{target.stem}.tmp-{secrets.token_hex(4)}{target.suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path: PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through `atomic_output`."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
