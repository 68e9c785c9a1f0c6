"""`mpfn up` (the local stack) and `mpfn invoke` (call a model through the router)."""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mpfn.cli.common import (
    CliError,
    Ctx,
    console,
    err_console,
    get_ctx,
    handle_errors,
    print_json,
    prog,
)
from mpfn.registry import NotRegistered, Registry, parse_model_ref
from mpfn.store import Store, StoreError

if TYPE_CHECKING:
    from mpfn.entrypoints import RouterEntry
    from mpfn.up import Launcher, UpPlan


def _local_state_dir(url: str) -> Path:
    if not url.startswith("file://"):
        raise CliError(f"mpfn up runs on a local state directory, not {url}")
    return Path(url[len("file://") :])


@handle_errors
def up(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="State directory")] = None,
    port: Annotated[int, typer.Option(help="Router port (0 picks a free port)")] = 8080,
    keep_alive: Annotated[float, typer.Option(help="Keep-alive seconds of the warm loop")] = 600.0,
    runtime: Annotated[
        str,
        typer.Option(
            help="processes, or containers: mpfn's images (built first when missing) "
            "on podman or docker"
        ),
    ] = "processes",
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="pools on TLS with a private CA made at start, requiring a token and a "
            "client certificate; the router holds them by reference",
        ),
    ] = False,
    sites: Annotated[
        str | None,
        typer.Option(
            help="several sites on this machine, e.g. a,b: each with its own state replica, "
            "router and two worker pools; the state directory is the primary"
        ),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            help="run as one site of a deployment: its router knows the site, its pools "
            "are <site>-1 and <site>-2 (what `mpfn deploy` runs for a local site)"
        ),
    ] = None,
    primary: Annotated[
        str | None,
        typer.Option(
            help="with --site: the primary state; registrations are written there (and "
            "replicated), the state directory is this site's replica"
        ),
    ] = None,
    grpc_port: Annotated[
        int,
        typer.Option(
            "--grpc-port",
            help="the router also serves the v2 gRPC API on this port (0: REST only)",
        ),
    ] = 0,
    router_processes: Annotated[
        int,
        typer.Option(
            "--router-processes",
            min=1,
            help="processes serving the router's port (each admits its share of every "
            "pool; /metrics covers all)",
        ),
    ] = 1,
) -> None:
    """Run the embedded local stack: demo model, two worker pools, router, warm loop.

    A worker (or the warm loop) that stops is restarted with backoff on the same port;
    Ctrl-C, SIGTERM or a router that stops end the stack."""
    from mpfn.up import UpError, check_ports, make_plan, start_stack

    c = get_ctx(ctx)
    if state:
        c.state_flag = state
    state_dir = _local_state_dir(c.config.state)
    if site is not None and sites:
        raise CliError("--site and --sites cannot be combined")
    if primary is not None and site is None:
        raise CliError("--primary applies to one site of a deployment: give --site too")
    if site is not None:
        parse_sites(site)
    plan = make_plan(
        state_dir, port, secure=secure, sites=parse_sites(sites), site=site, primary=primary
    )
    plan = replace(plan, router_processes=router_processes)
    if grpc_port:
        if runtime != "processes":
            raise CliError("--grpc-port needs --runtime processes")
        plan = replace(plan, grpc_port=grpc_port)
    echo = lambda s: console.print(s, highlight=False)  # noqa: E731
    launcher = None
    if runtime not in ("processes", "containers"):
        raise CliError(f"unknown runtime {runtime!r}; choose processes or containers")

    def stop_starting(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # start_stack stops what it started, then this exits 130

    signal.signal(signal.SIGTERM, stop_starting)
    try:
        check_ports(plan)
        if runtime == "containers":
            launcher = _container_launcher(plan, echo)
        stack = start_stack(
            plan,
            keep_alive_s=keep_alive,
            echo=echo,
            launcher=launcher,
            primary_options=c.config.options,
        )
    except UpError as exc:
        raise CliError(str(exc)) from None
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    example = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
    console.print(f"state: {state_dir}")
    for spec in plan.sites:
        console.print(f"site {spec.name}: replica {spec.state_dir}", highlight=False)
    for spec in plan.sites:
        print(f"router ({spec.name}): {spec.router_url}", flush=True)
    if plan.site:
        print(f"router ({plan.site}): {plan.router_url}", flush=True)
    elif not plan.sites:
        print(f"router: {plan.router_url}", flush=True)
    keys = _api_keys(state_dir)
    for line in _keys_notes(*keys):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    header = ' -H "Authorization: Bearer $MPFN_API_KEY"' if any(keys) else ""
    console.print("try it:", highlight=False)
    console.print(
        f"  curl -s{header} {plan.router_url}/v2/models/demo/infer -d '{json.dumps(example)}'",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    console.print(
        f'  {prog()} invoke demo --input \'{{"x": [[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, '
        "0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]}'"
        + ("   # sends $MPFN_API_KEY (or pass --api-key KEY)" if any(keys) else ""),
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    console.print("Ctrl-C stops everything.")
    try:
        while not stopping.wait(0.5):
            failure = stack.supervise()
            if failure is not None:
                raise CliError(failure)
    finally:
        console.print("stopping ...")
        stack.stop()


def _api_keys(state_dir: Path) -> tuple[bool, bool]:
    """(whether the state holds API keys, whether the router requires one): the router
    `mpfn up` starts takes its settings from this environment (`MPFN_ROUTER_AUTH`)."""
    import os

    from mpfn.auth import keys_prefix
    from mpfn.store import LocalStore

    try:
        stored = bool(LocalStore(state_dir, create=False).list(keys_prefix()))
    except (StoreError, OSError):
        stored = False
    return stored, os.environ.get("MPFN_ROUTER_AUTH", "").strip() == "keys"


def _keys_notes(stored: bool, required: bool) -> list[str]:
    """What to tell about API keys before the examples."""
    if required and not stored:
        return [
            "the router requires an API key (MPFN_ROUTER_AUTH=keys) and the state has none: "
            "create one with `mpfn keys create NAME` and export it as MPFN_API_KEY"
        ]
    if required:
        return ["the router requires an API key (MPFN_ROUTER_AUTH=keys): export MPFN_API_KEY"]
    if stored:
        return [
            "the state has API keys; this router does not check them "
            "(MPFN_ROUTER_AUTH=keys turns them on)"
        ]
    return []


def parse_sites(text: str | None) -> tuple[str, ...]:
    """`a,b` -> ("a", "b"); CliError for a bad or repeated name."""
    if text is None:
        return ()
    from mpfn.documents import SITE_PATTERN

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if not re.match(SITE_PATTERN, n)]
    if bad or not names:
        raise CliError(
            f"--sites {text!r}: give site names separated by commas, each lowercase letters, "
            "digits and '-' starting with a letter (e.g. --sites a,b)"
        )
    if len(set(names)) != len(names):
        raise CliError(f"--sites {text!r}: a site is named twice")
    return names


def _container_launcher(plan: UpPlan, echo: Callable[[str], None]) -> Callable[[str], Launcher]:
    """Build (or find) the router and worker images, then run the parts as containers."""
    from mpfn.cli.build import default_source
    from mpfn.containers import find_runtime
    from mpfn.images.build import BuildOptions, build_images, default_cache_dir
    from mpfn.images.builder import Builder, BuilderError, detect
    from mpfn.images.catalog import resolve
    from mpfn.images.platforms import host_platform
    from mpfn.up import container_launcher

    tool = find_runtime()
    source = default_source()
    if source is None:
        raise CliError("--runtime containers builds mpfn's images from its source tree")
    echo("finding or building the router and worker images ...")
    options = BuildOptions(source, default_cache_dir(), host_platform())
    try:
        built = build_images(Builder(detect(tool)), resolve(["router", "worker"]), options, echo)
    except BuilderError as exc:
        raise CliError(str(exc)) from exc
    images = {b.target: b.ref for b in built}
    for b in built:
        echo(f"image {b.ref} ({b.size_bytes / 1e6:,.0f} MB)")
    return lambda store_url: container_launcher(images, plan, store_url, tool)


_DTYPES = {"f": "FP32", "i": "INT64", "u": "UINT64", "b": "BOOL"}


def build_infer_request(payload: Any, datatypes: dict[str, str]) -> dict[str, Any]:
    """A v2 request from either a full request or a `{input_name: nested list}` shorthand."""
    import numpy as np

    if isinstance(payload, dict) and "inputs" in payload:
        return payload
    if not isinstance(payload, dict) or not payload:
        raise CliError('--input must be a v2 request or an object like {"x": [[1.0, 2.0]]}')
    inputs = []
    for name, value in payload.items():
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise CliError(f"input {name!r}: not a rectangular array ({exc})") from None
        datatype = datatypes.get(name) or _DTYPES.get(array.dtype.kind)
        if datatype is None:
            raise CliError(f"input {name!r}: cannot infer a datatype for {array.dtype}")
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
        )
    return {"inputs": inputs}


@handle_errors
def invoke(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME[:VERSION]")],
    input_json: Annotated[str, typer.Option("--input", "-i", help="JSON request or @FILE")],
    router: Annotated[
        str | None,
        typer.Option(
            help="Router URL (default: $MPFN_ROUTER, else the routers the state records, "
            "else the running `mpfn up`)"
        ),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            "--site",
            help="Try this site's router first (of those the state records); the others "
            "are failed over to",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="mpfn API key, sent as 'Authorization: Bearer <key>' (default: $MPFN_API_KEY)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send one inference request to the router and print the response.

    Without --router or $MPFN_ROUTER, the routers the state records are tried, --site's
    first, failing over to the next site when one is down or answers 502/503/504; the
    site that answered is printed on stderr.
    """
    import os

    from mpfn.client import Client, ClientError
    from mpfn.up import read_router_url

    c = get_ctx(ctx)
    name, version = parse_model_ref(model)
    text = Path(input_json[1:]).read_text() if input_json.startswith("@") else input_json
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--input is not valid JSON: {exc}") from None
    datatypes: dict[str, str] | None = None
    state_dir = None
    if c.config.state.startswith("file://"):
        state_dir = Path(c.config.state[len("file://") :])
        datatypes = _input_datatypes(c.store, name, version)
    url = router or os.environ.get("MPFN_ROUTER")
    entries = [] if url else _recorded_routers(c)
    if site is not None and not entries:
        raise CliError(
            "--site picks one of the routers the state records, and "
            + ("--router/$MPFN_ROUTER names one router" if url else "it records none")
        )
    if not url and not entries:
        url = read_router_url(state_dir) if state_dir else None
    if not url and not entries:
        where = (
            f"no `mpfn up` runs on {state_dir}"
            if state_dir is None or state_dir.is_dir()
            else f"no state at {state_dir}"
        )
        raise CliError(
            f"no router: {where}; start `{prog()} up`, pass the running stack's --state DIR, "
            "or --router URL"
        )
    if datatypes is None:
        datatypes = _input_datatypes(c.store, name, version) if entries else {}
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    body = build_infer_request(payload, datatypes)
    key = api_key or os.environ.get("MPFN_API_KEY") or None
    try:
        client = Client(entries or [_router_entry(url or "")], prefer=site, api_key=key)
        with client:
            resp = client.request("POST", path, json=body)
    except ClientError as exc:
        raise CliError(str(exc)) from None
    served = client.last
    if entries and served is not None:
        skipped = "".join(f"; {a.site} skipped: {a.why}" for a in served.failed_over)
        err_console.print(
            f"answered by site {served.site} ({served.url}){skipped}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    try:
        data = resp.json()
    except ValueError:
        data = {"error": resp.text}
    if resp.status_code >= 400:
        message = data.get("error", data) if isinstance(data, dict) else data
        raise CliError(f"{resp.status_code}: {message}")
    data.setdefault("parameters", {})["pool"] = resp.headers.get("x-mpfn-pool")
    print_json(data)


def _input_datatypes(store: Store, name: str, version: str | None) -> dict[str, str]:
    """The registered model's input datatypes, or {} when the state does not have it."""
    try:
        doc = Registry(store).model(name, version)
    except NotRegistered:
        return {}  # not registered here: datatypes come from the values
    return {t.name: t.datatype for t in doc.inputs}


def _recorded_routers(c: Ctx) -> list[RouterEntry]:
    """The routers the state records; none when it records none or cannot be read."""
    from mpfn.entrypoints import read_routers

    try:
        return read_routers(c.store)
    except (StoreError, OSError, ImportError):
        return []


def _router_entry(url: str) -> RouterEntry:
    from pydantic import ValidationError

    from mpfn.entrypoints import DEFAULT_SITE, RouterEntry

    try:
        return RouterEntry(site=DEFAULT_SITE, url=url)  # type: ignore[arg-type]
    except ValidationError:
        raise CliError(f"router {url!r} is not an http(s) URL") from None
