"""Shared command-line plumbing: every package's ``__main__`` runs its typer app through here.

A :class:`~nets.errors.UserError` becomes one red line on stderr and exit code 1; a usage
error (unknown option, missing argument) one line and exit code 2; any other exception keeps
its traceback, because that is a bug to report.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from nets.errors import UserError

err_console = Console(stderr=True)


def make_app(help_text: str) -> typer.Typer:
    """A typer app configured like every other command of the project."""
    return typer.Typer(
        add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=help_text
    )


def usage_error_classes() -> tuple[type[Exception], ...]:
    """The click exception classes typer raises for a bad command line.

    typer 0.2x vendors its own copy of click (``typer.core._click``), whose exceptions are
    not ``click.ClickException``; older typer raises click's own. Both are looked up from
    the installed typer, so an upgrade cannot silently turn usage errors into tracebacks.
    """
    import click
    import typer.core

    classes: list[type[Exception]] = [click.ClickException]
    vendored = getattr(typer.core, "_click", None)
    if vendored is not None:
        classes.append(vendored.exceptions.ClickException)
    return tuple(classes)


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run ``app`` and return the exit code (for ``sys.exit``)."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except usage_error_classes() as exc:  # bad option or argument: one line, exit 2
        hint = " (see --help)" if exc.exit_code == 2 else ""
        message = " ".join(exc.format_message().split())
        err_console.print(f"[bold red]error:[/] {message}{hint}", highlight=False, soft_wrap=True)
        return exc.exit_code
    return 0


def parse_options(
    pairs: list[str],
    defaults: dict[str, object],
    what: str = "this model",
    types: dict[str, type] | None = None,
) -> dict[str, object]:
    """``["width=32", "act=relu"]`` → ``{"width": 32, "act": "relu"}``, typed by ``types``
    where given, else by the defaults' types (a ``None`` default without a type stays a
    string)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--arg {pair!r}: expected KEY=VALUE, e.g. --arg width=32")
        if key not in defaults:
            known = ", ".join(f"{k}={v}" for k, v in defaults.items()) or "none"
            raise UserError(f"--arg {key}: unknown option; {what} accepts {known}")
        kind = (types or {}).get(key) or type(defaults[key])
        try:
            if kind is bool:
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[key] = raw.lower() in ("true", "1")
            elif kind is type(None):
                out[key] = raw
            else:
                out[key] = kind(raw)
        except ValueError:
            raise UserError(f"--arg {key}={raw!r}: expected a {kind.__name__}") from None
    return out


def write_json(path: Path | None, payload: dict) -> None:
    """``payload`` as indented JSON at ``path`` (folders made); nothing when ``path`` is None.
    Values JSON does not know (paths, devices) are written as their ``str``."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str))


def result_table(title: str, rows: dict[str, object]) -> Table:
    """A two-column "what: value" table: fits an 80-column terminal or a CI log."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table
