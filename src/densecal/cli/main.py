"""Entry point of the ``densecal`` command.

Exit codes: 0 success, 2 bad input or usage (one line on stderr, no traceback), 1 a bug.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

import typer

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
    """Run the CLI; bad input ends with one line on stderr and exit code 2."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="densecal")
    except SystemExit as exc:
        if exc.code not in (0, None):  # success returns normally, so main() is callable
            raise
    except DensecalInputError as exc:
        print(f"densecal: error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        print(f"densecal: error: {_os_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("densecal: interrupted", file=sys.stderr)
        sys.exit(130)


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


def _one_line(exc: DensecalInputError) -> str:
    """The error's own message, also when a DataLoader worker wrapped it with its traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if last.startswith("densecal.errors.") else last
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    main()
