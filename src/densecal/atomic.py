"""Atomic output: every file densecal writes appears whole or not at all.

Files are written to a temporary sibling and renamed into place (``os.replace`` is atomic on
POSIX and Windows within one file system), so an interrupted run never leaves a half-written
``metrics.json`` or checkpoint, and an existing result is never half-overwritten.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import errno
import functools
import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from densecal._checks import check_out_dir
from densecal.errors import input_error

try:
    import fcntl
except ImportError:  # Windows: no locks, so leftover staging folders are kept
    fcntl = None  # type: ignore[assignment]

__all__ = ["OUTPUT_MARKER", "TEXT_ERRORS", "atomic_path", "atomic_write_bytes", "atomic_write_text",
           "check_replaceable", "claim_workspace", "output_kind", "staged_dataset",
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


@contextlib.contextmanager
def _naming_output(stage: Path, given: Path) -> Iterator[None]:
    """Re-raise a file-system error inside the staging folder as one naming the user's output
    (``out/report.md: No space left on device``); one without a file name names ``given``."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        name = os.fsdecode(exc.filename) if exc.filename is not None else ""
        inside = name.startswith(os.fspath(stage) + os.sep)
        if name and not inside:
            raise
        shown = given / Path(name).relative_to(stage) if inside else given
        raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(shown)) \
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
    """Write ``text`` (UTF-8, :data:`TEXT_ERRORS`) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8", errors=TEXT_ERRORS))


TEXT_ERRORS = "densecal.filename"
"""Encoding error handler for every text file densecal writes: a file name that is not valid
UTF-8 (Python holds its bytes as surrogates, e.g. ``b"caf\\xe9.png"`` as ``"caf\\udce9.png"``)
is written as ``caf\\xe9.png``, so a result never fails on a name and stays valid UTF-8."""


def _escape_name_bytes(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start:exc.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                   else f"\\u{ord(c):04x}" for c in text), exc.end


codecs.register_error(TEXT_ERRORS, _escape_name_bytes)


OUTPUT_MARKER = ".densecal-output.json"
"""Hidden file in every folder densecal replaces as a whole; says which verb wrote it."""
OUTPUT_SCHEMA = "densecal.output/1"


@contextlib.contextmanager
def staged_directory(out_dir: str | Path, kind: str,
                     accept: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Build a result folder beside ``out_dir`` and put it in place as a whole, in one step.

    The block writes into a staging folder ``.NAME.XXXX.staging`` in ``out_dir``'s parent (one
    file system, so renames are atomic). On success the staging folder becomes ``out_dir``: a
    missing or empty ``out_dir`` is replaced by one rename; an earlier result is swapped with it
    by one atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, and a
    crash between them is undone on the next run) and then deleted. So after any crash, even
    SIGKILL, ``out_dir`` holds the old result or the new one, never a mixture, and no file of an
    earlier run survives beside the new result. If the block raises, ``out_dir`` is untouched.

    Only folders densecal wrote are ever replaced: ``out_dir`` must be missing, empty, or an
    earlier result of the same ``kind`` (its hidden :data:`OUTPUT_MARKER` file, written here, or
    ``accept(out_dir)`` for data sets recognised by their own manifest). Staging folders left by
    a killed run are removed on the next run into the same parent; a staging folder is locked
    (``flock``) while its run is alive, so two concurrent runs never delete each other's work.
    Two runs into the same ``out_dir`` both succeed; the one that finishes last wins.

    Args:
        out_dir: destination folder; its parent is created if missing. A symbolic link is
            followed: the folder it points to is replaced.
        kind: what writes the folder (``"evaluate"``, ``"predict"``, ``"densecal.demo-data/1"``).
        accept: optional test recognising an earlier result without the marker.

    Yields:
        The staging folder to write into.

    Raises:
        DensecalInputError: ``out_dir`` is a file, or a non-empty folder densecal did not write
            as a ``kind`` result (checked before the block runs and again before the swap).
        OSError: the parent cannot be created or written (read-only, full disk); its filename
            is ``out_dir``, never the staging folder.
    """
    given = check_out_dir(out_dir)
    target = given.resolve()
    _check_replaceable(target, given, kind, accept)
    with _naming(given):
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(target)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging",
                                      dir=target.parent))
    lock = _lock(stage)
    try:
        os.chmod(stage, 0o777 & ~_umask())
        with _naming_output(stage, given):
            yield stage
        with _naming(given):
            (stage / OUTPUT_MARKER).write_text(_marker_text(kind), encoding="utf-8")
            _put_in_place(stage, target, given, kind, accept)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # the failed build, or the replaced result
        if lock is not None:
            os.close(lock)


@contextlib.contextmanager
def staged_dataset(out_dir: str | Path, schema: str, manifest: str = "manifest.json"
                   ) -> Iterator[Path]:
    """:func:`staged_directory` for a generated data set that carries its own ``manifest``.

    ``out_dir`` must be missing, empty, or a previous data set of the same kind (its
    ``manifest`` file has ``"schema": schema``); any other folder is refused, so no file of the
    user's is overwritten or deleted. The block must write the ``manifest`` file.

    Raises:
        DensecalInputError: ``out_dir`` is a file, or a non-empty folder that is not a previous
            data set of this kind.
    """
    def written_before(folder: Path) -> bool:
        return _manifest_schema(folder / manifest) == schema

    with staged_directory(out_dir, schema, accept=written_before) as stage:
        yield stage


def claim_workspace(out_dir: str | Path, kind: str) -> Path:
    """Create or re-open a densecal workspace folder (``densecal demo``/``benchmark`` ``--out``).

    A workspace holds sub-folders densecal manages one by one (``data/``, ``runs/``,
    ``report/``). It must be missing, empty, or a workspace of the same ``kind`` (hidden
    :data:`OUTPUT_MARKER`), so a user's folder is never written into.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        DensecalInputError: ``out_dir`` is a file or a non-empty folder of something else.
        OSError: the folder cannot be created (its filename is ``out_dir``).
    """
    given = check_replaceable(out_dir, kind)
    marker = given / OUTPUT_MARKER
    if not marker.is_file():
        with _naming(given):
            given.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, _marker_text(kind))
    return given


def check_replaceable(out_dir: str | Path, kind: str) -> Path:
    """Refuse, before any work, an ``out_dir`` that :func:`staged_directory` would refuse.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        DensecalInputError: ``out_dir`` is a file or a non-empty folder that is not an earlier
            ``kind`` result.
    """
    given = check_out_dir(out_dir)
    _check_replaceable(given.resolve(), given, kind, None)
    return given


def _marker_text(kind: str) -> str:
    return json.dumps({"schema": OUTPUT_SCHEMA, "kind": kind}) + "\n"


def output_kind(folder: Path) -> str | None:
    """The ``kind`` in ``folder``'s :data:`OUTPUT_MARKER`, or None when there is none."""
    try:
        data = json.loads((folder / OUTPUT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) and \
        data.get("schema") == OUTPUT_SCHEMA else None


def _check_replaceable(target: Path, given: Path, kind: str,
                       accept: Callable[[Path], bool] | None) -> None:
    """Refuse a non-empty ``target`` that is not an earlier ``kind`` result."""
    try:
        if not target.is_dir() or not any(target.iterdir()):
            return
    except OSError:
        return  # unreadable: the write itself will fail and name the folder
    found = output_kind(target)
    if found == kind or (accept is not None and accept(target)):
        return
    what = (f"holds densecal {found} output, not {kind} output" if found else
            "is not empty and was not written by densecal")
    raise input_error(given, f"{what}; choose a new or empty folder (densecal only replaces "
                             f"folders it wrote)")


def _put_in_place(stage: Path, target: Path, given: Path, kind: str,
                  accept: Callable[[Path], bool] | None) -> None:
    """Make ``stage`` become ``target``; afterwards ``stage`` holds the replaced result, if any."""
    for _ in range(100):  # another run may swap between our steps; each try is short
        try:
            os.rename(stage, target)  # target missing or an empty folder: one step
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        _check_replaceable(target, given, kind, accept)
        if _exchange(stage, target):
            return
        old = stage.with_suffix(".old")
        try:
            os.rename(target, old)
        except FileNotFoundError:
            continue
        try:
            os.rename(stage, target)
        except OSError:
            os.rename(old, target)  # someone put a result there meanwhile: keep theirs
            continue
        with contextlib.suppress(FileNotFoundError):  # a clean-up may have removed it already
            os.rename(old, stage)
        return
    raise OSError(errno.EBUSY, "other runs keep replacing this folder", os.fspath(given))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False when
    the platform or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    if err == errno.ENOENT:  # the target vanished (another run's two-step swap): try again
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def _lock(folder: Path) -> int | None:
    """An exclusive ``flock`` on ``folder``, held until the returned descriptor is closed;
    None when another process holds it, the folder is gone, or there is no fcntl."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _is_abandoned(folder: Path) -> bool:
    """True when no live process holds ``folder``'s lock (its run was killed)."""
    fd = _lock(folder)
    if fd is None:
        return False
    os.close(fd)
    return True


def _clean_leftovers(target: Path) -> None:
    """Remove ``target``'s staging folders whose run was killed; undo a half-done swap.

    The two-rename swap moves ``target`` to ``.NAME.XXXX.old`` while its staging folder
    ``.NAME.XXXX.staging`` is locked; a killed run leaves either both (``target`` missing: the
    old result is put back) or, after its new result is in place, only the ``.old`` folder.
    """
    prefix = glob.escape(f".{target.name}.")
    for path in sorted(target.parent.glob(f"{prefix}*.staging")):
        old = path.with_suffix(".old")
        if not _is_abandoned(path):
            continue
        if old.is_dir() and not target.exists():
            os.rename(old, target)  # killed between the two renames: the old result comes back
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
    for old in sorted(target.parent.glob(f"{prefix}*.old")):
        if target.exists() and not old.with_suffix(".staging").exists():
            shutil.rmtree(old, ignore_errors=True)  # replaced result whose deletion was cut


def _manifest_schema(path: Path) -> str | None:
    """The ``"schema"`` of a JSON manifest, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("schema")
    except (OSError, ValueError, AttributeError):
        return None
