"""What every scopesr command shares: its exit codes and how a click command becomes ``main(argv) -> int``.

Exit codes, the same for sr-upscale, sr-train, sr-convert, sr-bench and the Pi demo:
0 ok, 1 some inputs / measurements / the run failed, 2 usage error (bad option or value).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])


def runtime_options(f: F) -> F:
    """``--threads N`` and ``--spin/--no-spin``, the same in every command that runs a model
    (None when not given: scopesr.sdk.cpu.thread_policy decides)."""
    f = click.option(
        "--spin/--no-spin",
        default=None,
        help="Let idle runtime threads spin-wait (ONNX Runtime). Default: off on machines of at most 4 cores "
        "(a Pi), where a spinning thread fights other busy processes (camera, display) for a core; on above that.",
    )(f)
    f = click.option(
        "--threads",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Runtime CPU threads. Default (or 0): one per available core (the affinity mask, within a "
        "cgroup CPU quota; a Pi 4/5 has 4).",
    )(f)
    return f


def run_command(command: click.Command, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run ``command`` on ``argv`` (default: the process's arguments) and return its exit status.

    click's own errors keep their messages (a usage error with the usage line, exit 2); Ctrl-C
    prints "Aborted!" and exits 1; a command that returns an int exits with it.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.UsageError as exc:  # bad option or value: click says which, with the usage line
        exc.show()
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return EXIT_FAILED
    return rv if isinstance(rv, int) else EXIT_OK
