"""Writing files so that a kill, a full disk or a read-only folder never leaves half a file under
its final name, and never touches what was there before: every file the project writes (models,
states, JSON, PNGs, CSVs, videos) goes through a temp file in the same folder, fsync, rename."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def chmod_like_new_file(path: str | Path) -> None:
    """mkstemp makes 0600 files; give a finished file the permissions open() would have."""
    os.chmod(path, 0o666 & ~umask())


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call write(tmp) on a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _naming(err, path) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        chmod_like_new_file(tmp)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _naming(err: OSError, path: Path) -> OSError:
    """The same error about the file the user asked for, not the temp file beside it."""
    if err.errno is None:
        return err
    return type(err)(err.errno, err.strerror, str(path))


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8; a file name that is not UTF-8 (a surrogate escape) is written back as its own bytes."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)

    return atomic_write(path, write)
