"""Atomic artifact writes.

Every artifact is written to a temporary file in the same directory and renamed into place, so a
crash or a SIGKILL never leaves a half-written file under a name that looks finished.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmcpipe.errors import StageError

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` and rename the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; artifacts are shared files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a file object: given a file name, torch names the archive's top
    folder after it (here a random temporary name), so equal objects saved twice differed in
    their bytes; through a file object it is always ``archive``, and equal objects give equal
    bytes. Run fingerprints hash a start point's bytes (``training.checkpoint.run_fingerprint``): a
    W_0 rebuilt by a retried cluster job must not make its runs' resume files look stale."""
    import torch  # here, not at the top: table and figure stages never load torch (~2.5 s)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    write_atomic(path, write)


class DamagedArtifact(StageError):
    """A checkpoint that exists but cannot be read: truncated, overwritten, not a checkpoint.

    Torch reports that as a zip, pickle or EOF error under a traceback that names neither the
    file nor the remedy; this message is one line with both, for ``lmcpipe.cli.main`` to print.
    """

    def __init__(self, path: str | os.PathLike, cause: Exception) -> None:
        first = (str(cause).splitlines() or [""])[0].split(". ")[0]
        reason = f"{type(cause).__name__}: {first}" if first else type(cause).__name__
        super().__init__(f"{path} is damaged ({reason}); delete it and rerun snakemake, "
                         "which rebuilds it")
        self.path = Path(path)


def load_torch(path: str | os.PathLike) -> Any:
    """Load a checkpoint without executing code from it; ``DamagedArtifact`` if it is unreadable.

    A missing or forbidden file keeps its own OSError: its message already says what is wrong.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError, MemoryError):
        raise
    except Exception as e:  # torch raises many kinds on malformed input (zip, pickle, EOF, ...)
        raise DamagedArtifact(path, e) from e


def save_text(text: str, path: str | os.PathLike) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    write_atomic(path, write)
