"""One rendered Kubernetes container -> a `podman run` command line. Pure.

For running the pods `mpfn deploy --target k8s` renders on one host, without a cluster:
the container's image, `command` (the entrypoint) and `args`, with `$(VAR)` references
expanded from its `env` the way the kubelet does; `env` (entries with `valueFrom` and
`envFrom` secrets have no local meaning: refused, and skipped when optional); emptyDir
volumes as a tmpfs, or a host directory given per volume name (to share one between the
containers of a pod); Secret and projected volumes as the host directory given for them,
holding the files the kubelet would project; `--user` from `securityContext.runAsUser`/`runAsGroup`;
`--read-only` when `readOnlyRootFilesystem` says so; always the host's network, so the
container ports are ports on the host. `ports` renumbers ports, for several pods whose
manifests use the same ones: an argument, env value or probe port equal to an old port,
or a URL/`HOST:PORT` ending in it, gets the new one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mpfn.containers import ContainerSpec

PortMap = Mapping[int, int]


class UnsupportedSpec(ValueError):
    """The container spec uses something that has no `podman run` translation here."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined VAR is replaced by its value, `$$` is a
    literal `$` (so `$$(VAR)` stays `$(VAR)`), anything else is left as it is."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(" and (close := text.find(")", i + 2)) != -1:
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def renumber(text: str, ports: PortMap) -> str:
    """`text` with each old port replaced: the whole text, or a `:PORT` ending a host:port
    (before a `/` or the end)."""
    for old, new in ports.items():
        if text == str(old):
            return str(new)
        text = re.sub(rf":{old}(?=/|$)", f":{new}", text)
    return text


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's `env`, each value expanded with the entries before it."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" not in entry and "valueFrom" in entry:
            raise UnsupportedSpec(f"env {entry['name']}: valueFrom has no local translation")
        env[entry["name"]] = expand(str(entry.get("value", "")), env)
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        if not ref.get("optional"):
            raise UnsupportedSpec(f"envFrom {ref.get('name')!r} is required and not local")
    return env


def _user(context: Mapping[str, Any]) -> str | None:
    user, group = context.get("runAsUser"), context.get("runAsGroup")
    if user is None:
        return None
    return f"{user}:{group}" if group is not None else str(user)


def _mounts(
    container: Mapping[str, Any],
    volumes: Sequence[Mapping[str, Any]],
    volume_dirs: Mapping[str, str],
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    kinds = {v["name"]: v for v in volumes}
    binds: list[tuple[str, str]] = []
    tmpfs: list[str] = []
    for mount in container.get("volumeMounts") or []:
        name, path = mount["name"], mount["mountPath"]
        volume = kinds.get(name)
        if volume is not None and ("secret" in volume or "projected" in volume):
            if name not in volume_dirs:
                raise UnsupportedSpec(
                    f"volume {name!r}: a Secret translates only to a host directory holding "
                    "its files (volume_dirs)"
                )
            binds.append((volume_dirs[name], path))
            continue
        if volume is None or "emptyDir" not in volume:
            raise UnsupportedSpec(f"volume {name!r}: only emptyDir and Secret volumes translate")
        if name in volume_dirs:
            binds.append((volume_dirs[name], path))
        else:
            tmpfs.append(path)
    return tuple(binds), tuple(tmpfs)


def container_spec(
    container: Mapping[str, Any],
    volumes: Sequence[Mapping[str, Any]] = (),
    *,
    name: str,
    ports: PortMap | None = None,
    volume_dirs: Mapping[str, str] | None = None,
) -> ContainerSpec:
    """The `ContainerSpec` (`mpfn.containers`) running one Kubernetes container spec;
    `volumes` are the pod's, `volume_dirs` maps emptyDir names to host directories."""
    ports = ports or {}
    env = {k: renumber(v, ports) for k, v in container_env(container).items()}
    command = container.get("command")
    context = container.get("securityContext") or {}
    binds, tmpfs = _mounts(container, volumes, volume_dirs or {})
    return ContainerSpec(
        name=name,
        image=container["image"],
        entrypoint=tuple(renumber(expand(a, env), ports) for a in command) if command else None,
        args=tuple(renumber(expand(a, env), ports) for a in container.get("args") or []),
        env=env,
        volumes=binds,
        tmpfs=tmpfs,
        user=_user(context),
        read_only=bool(context.get("readOnlyRootFilesystem")),
    )


def run_argv(
    container: Mapping[str, Any],
    volumes: Sequence[Mapping[str, Any]] = (),
    *,
    name: str,
    ports: PortMap | None = None,
    volume_dirs: Mapping[str, str] | None = None,
    tool: str = "podman",
) -> list[str]:
    """`podman run -d ...` for one Kubernetes container spec (see `container_spec`)."""
    spec = container_spec(container, volumes, name=name, ports=ports, volume_dirs=volume_dirs)
    return spec.run_argv(tool)


def pod_specs(
    pod: Mapping[str, Any],
    *,
    prefix: str,
    ports: PortMap | None = None,
    volume_dirs: Mapping[str, str] | None = None,
) -> list[ContainerSpec]:
    """Every container of a pod spec (`spec.template.spec` of a Deployment), named
    `<prefix>-<container name>`, in the pod's order."""
    volumes = pod.get("volumes") or []
    return [
        container_spec(
            c, volumes, name=f"{prefix}-{c['name']}", ports=ports, volume_dirs=volume_dirs
        )
        for c in pod["containers"]
    ]


def readiness(container: Mapping[str, Any], ports: PortMap | None = None) -> tuple[int, str] | None:
    """(host port, path) of the container's HTTP readiness probe, named ports resolved."""
    probe = (container.get("readinessProbe") or {}).get("httpGet")
    if not probe:
        return None
    port = probe["port"]
    if isinstance(port, str):
        named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
        if port not in named:
            raise UnsupportedSpec(f"readiness probe port {port!r} is not a container port")
        port = named[port]
    port = int(port)
    return (ports or {}).get(port, port), str(probe.get("path", "/"))
