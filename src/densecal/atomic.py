"""Atomic output: every file densecal writes appears whole or not at all.

Files are written to a temporary sibling and renamed into place (``os.replace`` is atomic on
POSIX and Windows within one file system), so an interrupted run never leaves a half-written
``metrics.json`` or checkpoint, and an existing result is never half-overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from densecal._checks import check_out_dir
from densecal.errors import input_error

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "staged_dataset",
           "staged_directory"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Use it for writers that need a file name (``torch.save``, ``matplotlib.savefig``). On error
    the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the final destination. Its parent folder is created if missing.

    Yields:
        The temporary path to write to (same folder and suffix as ``path``).

    Raises:
        OSError: the folder cannot be created or written (read-only, full disk); its filename is
            ``path``, never the temporary sibling.
    """
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                        dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
    try:
        yield tmp
        with _naming(path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise a file-system error as one naming ``path``, the user's destination, rather than a
    temporary sibling (e.g. ``out/metrics.json: No space left on device``)."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or exc.filename == os.fspath(path):
            raise
        raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path)) \
            from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp, _naming(Path(path)):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_directory(out_dir: str | Path) -> Iterator[Path]:
    """Stage many output files in a temporary folder and move them into ``out_dir`` at the end.

    If the block raises, nothing reaches ``out_dir``: files already there from an earlier run stay
    untouched. On success a new ``out_dir`` is the staging folder renamed in one step; into an
    existing ``out_dir`` each staged file replaces its namesake with an atomic rename.

    Args:
        out_dir: destination folder, created if missing.

    Yields:
        The staging folder (inside ``out_dir``'s parent, so renames stay on one file system).

    Raises:
        OSError: the parent cannot be created or written (read-only, full disk); its filename is
            ``out_dir``, never the staging folder.
    """
    out_dir = Path(out_dir)
    with _naming(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".staging",
                                      dir=out_dir.parent))
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        with _naming(out_dir):
            if not out_dir.exists():  # a new folder appears whole, in one rename, or not at all
                os.replace(stage, out_dir)
                return
            for src in sorted(stage.rglob("*")):
                if src.is_file():
                    dst = out_dir / src.relative_to(stage)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_dataset(out_dir: str | Path, schema: str, manifest: str = "manifest.json"
                   ) -> Iterator[Path]:
    """Build a generated dataset in a staging folder and move it into ``out_dir`` at the end.

    A generator only ever replaces a folder it wrote itself: ``out_dir`` must be missing, empty,
    or a previous dataset of the same kind (its ``manifest`` file has ``"schema": schema``).
    Any other folder is refused, so no file of the user's is overwritten or deleted. A previous
    dataset is replaced: after the block succeeds, its files that the new build does not contain
    are deleted and the new files renamed into place (:func:`staged_directory`). If the block
    raises, ``out_dir`` is left untouched. The block must write the ``manifest`` file with the
    schema.

    Raises:
        DensecalInputError: ``out_dir`` is a file, or a non-empty folder that is not a previous
            dataset of this kind.
    """
    out_dir = check_out_dir(out_dir)
    previous = out_dir.is_dir() and any(out_dir.iterdir())
    if previous and _manifest_schema(out_dir / manifest) != schema:
        raise input_error(out_dir, f"is not empty and not a previous {schema} dataset; "
                                   f"choose a new or empty folder")
    with staged_directory(out_dir) as stage:
        yield stage
        if previous:
            for old in sorted(out_dir.rglob("*"), reverse=True):
                if old.is_file() and not (stage / old.relative_to(out_dir)).exists():
                    old.unlink()


def _manifest_schema(path: Path) -> str | None:
    """The ``"schema"`` of a JSON manifest, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("schema")
    except (OSError, ValueError, AttributeError):
        return None
