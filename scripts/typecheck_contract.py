"""Checked by scripts/typecheck: mypy must see these as the classes they are, not as Any.

adapters/ and functions/ install as mpfn.adapters and mpfn.functions; if mypy could not
follow those imports it would treat them as Any and check nothing that uses them.
"""

from mpfn.adapters.base import Adapter
from mpfn.functions.router.settings import RouterSettings


def adapter(value: Adapter) -> None:
    reveal_type(value)


def router_settings(value: RouterSettings) -> None:
    reveal_type(value)
