"""Talk to pools through their adapters: what they hold, and load/unload for a warm plan.

Adapters come from `mpfn.adapters.registry` (the `mpfn.adapters` entry points); adapters
shipped with mpfn are found even when the package's entry points are not installed (a
source checkout). A pool whose endpoint is an adapter server (`adapter_server`) is managed
through the pool protocol's repository API (the `ort` adapter's client) whatever backend
it fronts: the adapter server is the one writer of that backend's model config. Callers
may inject any `AdapterSource`, and the default one shares one injected
`httpx.AsyncClient`. Every failure becomes a one-line message on the pool or the
action it concerns: nothing here raises past a pool, so one broken pool cannot stop a run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from mpfn.adapters.base import Adapter, AdapterConfig, AdapterFactory, ArtifactSource
from mpfn.adapters.registry import UnknownAdapter, load_factory
from mpfn.documents import ModelVersion, Pool
from mpfn.poolauth.present import PoolCredentials
from mpfn.warm.plan import WarmAction

AdapterSource = Callable[[Pool], Adapter]

#: The adapter kind that speaks the pool protocol (v2 + model-repository extension +
#: `x-mpfn-load-ms`): mpfn's ORT worker and every adapter server.
POOL_PROTOCOL = "ort"
#: Adapters that ship with mpfn, used when no installed entry point names the kind.
BUILTIN: Mapping[str, str] = {POOL_PROTOCOL: "mpfn.adapters.ort:OrtAdapter"}


def one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def management_kind(pool: Pool) -> str:
    """The adapter kind the warmer manages `pool` through: the pool protocol's client for
    an adapter server (whatever it fronts), else the pool's own kind."""
    return POOL_PROTOCOL if pool.adapter_server else pool.adapter


def factory(kind: str) -> AdapterFactory:
    """The installed adapter of `kind`, else the built-in one; UnknownAdapter otherwise."""
    try:
        return load_factory(kind)
    except UnknownAdapter:
        target = BUILTIN.get(kind)
        if target is None:
            raise
        module, _, attr = target.partition(":")
        found: AdapterFactory = getattr(importlib.import_module(module), attr)
        return found


@dataclass(frozen=True)
class Secured:
    """What a pool's `auth` and `tls` give its adapter: credentials and its own client."""

    credentials: Mapping[str, str]
    client: httpx.AsyncClient | None  # with the pool's TLS context; None: the shared one


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    return value[7:] if value.startswith("Bearer ") else None


def adapter_credentials(
    kind: str, inference: Mapping[str, str], management: Mapping[str, str]
) -> dict[str, str]:
    """The resolved headers of a pool's inference and management calls, as the credentials
    the adapter of `kind` reads: `token`/`api_key` (bearer on every call), `admin_token`
    (the pool protocol's management token), TorchServe's `inference_key` and
    `management_key` (bearer), Triton's `management_key` + `management_header` (the header
    `--http-restricted-api` checks: an `auth` of type `header`)."""
    out: dict[str, str] = {}
    token, admin = _bearer(inference), _bearer(management)
    if token:
        out.update(token=token, api_key=token)
    if admin:
        out["admin_token"] = admin
    if kind == "torchserve":
        out.update({k: v for k, v in (("inference_key", token), ("management_key", admin)) if v})
    elif kind == "triton":
        named = [(k, v) for k, v in management.items() if k.lower() != "authorization"]
        if named:
            out.update(management_header=named[0][0], management_key=named[0][1])
    return out


async def secure_pool(
    pool: Pool, credentials: PoolCredentials, timeout_s: float = 300.0
) -> Secured:
    """Resolve `pool`'s inference and management credentials (`auth.admin_token`, else
    `auth.token`) and TLS context; CredentialError when they cannot be had."""
    inference = await credentials.keys(pool)
    management = await credentials.keys(pool, admin=True)
    creds = adapter_credentials(management_kind(pool), inference.headers, management.headers)
    client = None
    if management.ssl is not None:
        client = httpx.AsyncClient(timeout=timeout_s, verify=management.ssl)
    return Secured(creds, client)


def adapter_source(
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 300.0,
    secured: Mapping[str, Secured] | None = None,
    artifacts: ArtifactSource | None = None,
) -> AdapterSource:
    """Adapters for pools, all sharing `client` (each adapter makes its own when None)
    but for pools in `secured`, which get their credentials and TLS client. Each gets the
    pool's `management_url` and `options`, and `artifacts` (verified local copies of model
    files, for adapters that upload them to their backend: Triton, TorchServe)."""
    secured = secured or {}

    def make(pool: Pool) -> Adapter:
        extra = secured.get(pool.id)
        config = AdapterConfig(
            pool=pool,
            timeout_s=timeout_s,
            management_url=str(pool.management_url) if pool.management_url else None,
            options=pool.options,
            credentials=extra.credentials if extra else {},
            artifacts=artifacts,
        )
        own = extra.client if extra is not None and extra.client is not None else client
        return factory(management_kind(pool))(config, client=own)

    return make


async def held(adapter: Adapter, latest: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """model -> loaded versions; a backend that names no version holds the latest one."""
    out: dict[str, set[str]] = {}
    for entry in await adapter.loaded():
        name, _, version = entry.partition(":")
        out.setdefault(name, set()).add(version or latest.get(name, ""))
    return {name: frozenset(versions) for name, versions in out.items()}


async def apply_actions(
    adapter: Adapter,
    actions: Sequence[WarmAction],
    documents: Mapping[tuple[str, str], ModelVersion],
) -> list[WarmAction]:
    """Run one pool's actions in order; each comes back `done` or `failed` with the reason."""
    results: list[WarmAction] = []
    for action in actions:
        doc = documents.get((action.model, action.version)) or ModelVersion(
            name=action.model, version=action.version
        )
        try:
            if action.action == "load":
                loaded = await adapter.load(doc)
                results.append(
                    action.model_copy(update={"status": "done", "load_ms": loaded.load_ms})
                )
            else:
                await adapter.unload(doc)
                results.append(action.model_copy(update={"status": "done"}))
        except Exception as exc:  # a failed action is recorded; the next one still runs
            results.append(action.model_copy(update={"status": "failed", "error": one_line(exc)}))
    return results
