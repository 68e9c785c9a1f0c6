"""Global options in any position, and help that shows clean metavars.

`--state` and `--debug` belong to `mpfn` itself, `--json` to the command that prints; a
user writes them wherever they like (`mpfn models list --state X`, `mpfn --json status`).
`GlobalOptionsGroup` moves each to the command that owns it before Click parses, leaving
alone any option a sub-command defines under the same name (`state add-site --state`).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

# Typer may bundle its own copy of Click, so commands and options are recognised by what
# they have (`opts`, `get_command`), never by isinstance against the `click` package.
Command = Any

USAGE_ERROR: Any = typer.BadParameter.__mro__[1]  # UsageError of the Click Typer uses
ROOT_OPTIONS = ("--state", "--debug")  # hoisted to `mpfn` from wherever they are given
LEAF_OPTIONS = ("--json",)  # moved from `mpfn` to the command that defines it


def _is_group(command: Command) -> bool:
    return callable(getattr(command, "get_command", None))


def _option(command: Command, token: str) -> Any:
    name = token.split("=", 1)[0]
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        if name in (*param.opts, *param.secondary_opts):
            return param
    return None


def _takes_value(option: Any, token: str) -> bool:
    return not option.is_flag and not option.count and "=" not in token


def normalize_args(root: Command, ctx: Any, args: list[str]) -> list[str]:
    """`args` with each global option moved to where Click expects it."""
    if "--" in args:
        cut = args.index("--")
        return [*normalize_args(root, ctx, args[:cut]), *args[cut:]]
    hoisted: list[str] = []
    out: list[str] = []
    pending: list[tuple[int, str]] = []  # (position in out, token) of a leaf option
    slots: dict[str, int] = {}  # leaf option -> where the deepest command defining it starts
    command = root
    i = 0
    while i < len(args):
        token = args[i]
        name = token.split("=", 1)[0]
        option = _option(command, token) if token.startswith("-") else None
        if option is not None:
            width = 2 if _takes_value(option, token) else 1
            out += args[i : i + width]
            i += width
            continue
        if name in ROOT_OPTIONS and command is not root:
            width = 2 if name == "--state" and "=" not in token else 1
            if i + width > len(args):
                raise USAGE_ERROR(f"Option {name!r} requires an argument.", ctx=ctx)
            hoisted += args[i : i + width]
            i += width
            continue
        if name in LEAF_OPTIONS and _is_group(command):
            pending.append((len(out), token))
            i += 1
            continue
        out.append(token)
        i += 1
        if not token.startswith("-") and _is_group(command):
            sub = command.get_command(ctx, token)
            if sub is not None:
                command = sub
                for leaf in LEAF_OPTIONS:
                    if _option(sub, leaf) is not None:
                        slots[leaf] = len(out)
    for position, token in reversed(pending):
        slot = slots.get(token.split("=", 1)[0])
        out.insert(position if slot is None else slot, token)
    return [*hoisted, *out]


class GlobalOptionsGroup(TyperGroup):
    """The root group: accepts its global options before or after the sub-command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, normalize_args(self, ctx, args))


def _option_type(self: Any, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar
    if self.is_flag or self.count:
        return None  # a flag takes no value
    return _plain(self, ctx)


def _argument_type(self: Any, ctx: Any) -> str | None:
    return _plain(self, ctx)


def _plain(param: Any, ctx: Any) -> str:
    """`<str>` rather than `<list[str]>` for a repeatable option (its help says so)."""
    label = str(param.display_type(ctx))
    if label.startswith("<list[") and label.endswith("]>"):
        return f"<{label[6:-2]}>"
    return label


def clean_help_metavars() -> None:
    """Render flags without a value type and repeatable options by their element type."""
    if not hasattr(TyperOption, "display_type_rich"):  # a Typer that renders help differently
        return
    setattr(TyperOption, "display_type_rich", _option_type)  # noqa: B010
    setattr(TyperArgument, "display_type_rich", _argument_type)  # noqa: B010
