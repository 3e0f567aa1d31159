"""Entry point of the ``densecal`` command.

Exit codes: 0 success, 2 bad input or usage (one line on stderr, no traceback), 1 a bug,
130 interrupted (Ctrl+C), 143 terminated (SIGTERM during training).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import typer

from densecal import progress
from densecal.cli import benchmark as benchmark_cli
from densecal.cli import calibrate as calibrate_cli
from densecal.cli import data as data_cli
from densecal.cli import demo as demo_cli
from densecal.cli import evaluate as evaluate_cli
from densecal.cli import overmap as overmap_cli
from densecal.cli import predict as predict_cli
from densecal.cli import sample as sample_cli
from densecal.cli import train as train_cli
from densecal.errors import DensecalInputError

__all__ = ["app", "main"]

app = typer.Typer(
    name="densecal",
    help="Calibrated dense classification: train (SC-BCE, ASLP, ...), predict, and measure "
         "pixel calibration (ECE, OE, MCE, ACE, NLL, Brier) next to F-measure, MAE, S-measure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo_cli.demo)
app.command("train")(train_cli.train)
app.command("predict")(predict_cli.predict)
app.command("evaluate")(evaluate_cli.evaluate)
app.command("calibrate")(calibrate_cli.calibrate)
app.command("benchmark")(benchmark_cli.benchmark)
app.command("sample")(sample_cli.sample)
app.command("overmap")(overmap_cli.overmap)
app.add_typer(data_cli.app, name="data")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; bad input ends with one line on stderr and exit code 2.

    Usage errors (an unknown verb or option, a value of the wrong type) print one
    ``densecal: error:`` line too, with typer's "did you mean" where it has one. Ctrl+C ends
    with ``densecal: interrupted`` and exit code 130, also when a library below converted the
    interrupt into its own exit (Lightning exits with 1). SIGTERM during training (a scheduler's
    time limit or preemption) ends with ``densecal: terminated`` and exit code 143: Lightning
    stops at the next batch with a ``SystemExit`` whose code is None, which would otherwise read
    as success and let a script go on with a half-trained model (the last finished epoch's
    checkpoint is kept; ``--resume`` continues it).
    """
    try:
        with _watch_interrupts() as interrupted, progress.reporting(), _notes():
            code = app(args=list(argv) if argv is not None else None, prog_name="densecal",
                       standalone_mode=False)
    except SystemExit as exc:
        if interrupted():
            _interrupted()
        if _is_sigterm_exit(exc):
            print("densecal: terminated", file=sys.stderr)
            sys.exit(143)
        if exc.code not in (0, None):  # success returns normally, so main() is callable
            raise
        return
    except DensecalInputError as exc:
        _fail(_one_line(exc))
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        _fail(_os_error_line(exc))
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        message = exc.format_message().strip()  # type: ignore[attr-defined]
        if message:  # empty: `densecal` or `densecal data` alone, the help was printed
            print(f"densecal: error: {message.splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


def _fail(line: str) -> NoReturn:
    print(f"densecal: error: {line}", file=sys.stderr)
    sys.exit(2)


def _interrupted() -> NoReturn:
    print("densecal: interrupted", file=sys.stderr)
    sys.exit(130)


def _is_sigterm_exit(exc: SystemExit) -> bool:
    """Whether ``exc`` is Lightning's ``SIGTERMException`` (matched by name: importing Lightning
    here would slow every command's start)."""
    return any(cls.__name__ == "SIGTERMException" for cls in type(exc).__mro__)


def _is_usage_error(exc: Exception) -> bool:
    """Whether ``exc`` is click's (or typer's vendored click's) ``UsageError``: a bad verb,
    option or option value, found before any command ran."""
    return any(cls.__name__ == "UsageError" for cls in type(exc).__mro__) and \
        hasattr(exc, "format_message")


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def _notes() -> Iterator[None]:
    """Show densecal's own warnings as one ``densecal: note:`` line each, once per message
    (Python would print file, line and source, once per place that warns); warnings of other
    code go to Python's usual display."""
    original = warnings.showwarning
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):
            original(message, category, filename, lineno, file, line)
            return
        text = str(message)
        if text not in shown:
            shown.add(text)
            print(f"densecal: note: {text}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


@contextlib.contextmanager
def _watch_interrupts() -> Iterator[Callable[[], bool]]:
    """Record SIGINT while the block runs (then raise KeyboardInterrupt, as Python does); yields
    "was there one?" and restores the previous handler afterwards."""
    seen: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        seen.append(True)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, previous)


#: OSErrors caused by the user's files or file system (a read-only or full output folder, a path
#: that is a file where a folder is needed, an unreadable input), not by a bug: exit code 2.
_ENVIRONMENT_ERRNOS = frozenset({
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
    errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG,
})


def _os_error_line(exc: OSError) -> str:
    """``"<path>: <reason>"`` for a file-system error, e.g. ``"out/a.json: No space left..."``."""
    reason = exc.strerror or os.strerror(exc.errno or 0)
    if exc.filename is None:
        return reason
    target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else exc.filename
    return f"{target}: {reason}"


#: Library argument names whose errors reach the command line, and the option the user typed.
#: The library names its own parameters (``threshold: must lie in (0, 1]``); a user of the CLI
#: must read the flag instead.
OPTION_OF_ARGUMENT = {
    "threshold": "--threshold", "target_type": "--target", "target": "--target",
    "confidence": "--confidence", "n_bins": "--n-bins", "aggregate": "--aggregate",
    "protocol": "--protocol", "fine_bins": "--n-bins", "ignore_index": "--ignore-index",
    "num_classes": "--num-classes", "batch_size": "--batch-size", "n": "--n",
}


def _one_line(exc: DensecalInputError) -> str:
    """The error's own message, also when a DataLoader worker wrapped it with its traceback;
    a library argument name at its head is replaced by the option the user typed."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if last.startswith("densecal.errors.") else last
    text = text.splitlines()[0] if text else type(exc).__name__
    where, sep, problem = text.partition(": ")
    return f"{OPTION_OF_ARGUMENT[where]}: {problem}" if sep and where in OPTION_OF_ARGUMENT \
        else text


if __name__ == "__main__":
    main()
