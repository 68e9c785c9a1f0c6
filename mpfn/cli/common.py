"""Shared CLI plumbing: resolving the state store, printing, and turning errors into one line.

Commands receive a `Ctx` from `get_ctx()`; they never open stores themselves. Every error
mpfn knows about is printed as `error: <one line>` with exit code 1, never a traceback;
with `mpfn --debug` (or `MPFN_DEBUG=1`) the full traceback follows it, with every cause,
including those the one-line message replaced (`raise ... from None`).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from mpfn.config import Config, ConfigError, load_config
from mpfn.extras import missing_module_hint
from mpfn.replication import open_state
from mpfn.state import Documents, describe_validation_error
from mpfn.store import Store, StoreError
from mpfn.store.local import LocalStore

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)


#: Click's base exception, from whichever copy of Click this Typer uses.
CLICK_EXCEPTION: type[Exception] = typer.BadParameter.__mro__[2]


class CliError(Exception):
    """A user-facing problem; printed as one line."""


@dataclass
class Ctx:
    state_flag: str | None = None
    _config: Config | None = None
    _store: Store | None = None
    _docs: Documents | None = field(default=None)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.state_flag)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self.config.state
            local = Path(url[len("file://") :]) if url.startswith("file://") else None
            if local is not None and not local.is_dir():
                # made by the first write: a command that only reads leaves nothing behind
                self._store = LocalStore(local, create="on-write")
            else:
                self._store = open_state(url, self.config.options)
        return self._store

    @property
    def docs(self) -> Documents:
        if self._docs is None:
            self._docs = Documents(self.store)
        return self._docs


def get_ctx(typer_ctx: typer.Context) -> Ctx:
    root = typer_ctx.find_root()
    if not isinstance(root.obj, Ctx):
        root.obj = Ctx()
    return root.obj


DEBUG_ENV = "MPFN_DEBUG"


def debug_enabled() -> bool:
    """True when `--debug` was given or `MPFN_DEBUG` is set to a true value."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def full_traceback(exc: BaseException) -> str:
    """The traceback of `exc` and of every exception before it, innermost first, also
    where a `raise ... from None` hid the cause from Python's own report."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    parts = [
        "".join(traceback.format_exception(type(e), e, e.__traceback__, chain=False))
        for e in reversed(chain)
    ]
    return "\nThe above exception led to the following one:\n\n".join(parts)


def prog() -> str:
    """The command as it was invoked, for hints: `mpfn` when that is what PATH finds,
    else the path it was run by (`.venv/bin/mpfn`), or `python -m mpfn`."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "mpfn"
    name = os.path.basename(argv0)
    if name in ("__main__.py", "-m", "-c") or name.endswith(".py"):
        python = shlex.quote(sys.executable)
        return f"{python} -m mpfn"
    found = shutil.which(name)
    if found and os.path.realpath(found) == os.path.realpath(shutil.which(argv0) or argv0):
        return name
    return shlex.quote(argv0)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def fail(message: str, code: int = 1, exc: BaseException | None = None) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if exc is not None and debug_enabled():
        sys.stderr.write(full_traceback(exc))
    raise typer.Exit(code)


def _known_errors() -> tuple[type[BaseException], ...]:
    from mpfn.artifacts import ArtifactError

    return (CliError, StoreError, ConfigError, ValueError, LookupError, OSError, ArtifactError)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a command, printing known errors as one line and exiting non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, CLICK_EXCEPTION):
            raise  # Click reports these itself (usage errors, exit codes)
        except ValidationError as exc:
            fail(describe_validation_error(exc.title, exc), exc=exc)
        except ModuleNotFoundError as exc:
            fail(
                f"missing optional dependency {exc.name!r}: {missing_module_hint(exc.name)}",
                exc=exc,
            )
        except _known_errors() as exc:
            fail(str(exc).replace("\n", " ") or type(exc).__name__, exc=exc)
        except KeyboardInterrupt as exc:
            fail("interrupted", 130, exc=exc)
        except Exception as exc:
            fail(unexpected(exc), exc=exc)

    return wrapper


def unexpected(exc: BaseException) -> str:
    """One line for an error mpfn did not anticipate, saying how to see its traceback."""
    hint = "" if debug_enabled() else f" (`{prog()} --debug ...` shows the traceback)"
    return f"{type(exc).__name__}: {one_line(exc)}{hint}"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def as_json(doc: BaseModel) -> dict[str, Any]:
    return doc.model_dump(mode="json")
