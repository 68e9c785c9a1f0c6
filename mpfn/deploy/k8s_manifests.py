"""Kubernetes manifests for an mpfn deployment, rendered from the config. Pure.

One object per file, plus a `kustomization.yaml` listing them (`kubectl apply -k DIR`):

- Namespace; ServiceAccounts `mpfn-router` (no API token) and `mpfn-warmer`, with a Role
  that lets the warmer scale the adapter Deployments of its namespace and nothing else;
- the router: Deployment, Service and a CPU-based HorizontalPodAutoscaler;
- one Deployment and Service per adapter pool: the ORT worker (`ort`), the backend behind
  an adapter server in the same pod (`tfserving`, `torchserve`), or the backend alone
  (every other kind, which speaks the pool protocol itself);
- a NetworkPolicy that admits traffic to adapter pods (whose load/unload and repository
  endpoints share the inference port) only from the router and the warmer;
- the warmer as a CronJob, when a warmer image is configured.

Pods read the state from the configured URL; credentials come from an optional Secret
(`k8s.credentials_secret`) as environment variables. mpfn's own containers (images from
`mpfn build`) run as uid 10001 on a read-only root filesystem with an emptyDir at /tmp.

Pools may serve HTTPS and require credentials from Secrets (`tls_secret`, `client_certs`,
`token_secret`): the serving container mounts them and is started with the matching
flags; the router and the warmer mount, per pool, what they present to it under
`/etc/mpfn/pools/<pool id>/` (`ca.crt`, `token`, and for the warmer only `admin-token`)
and the client certificate under `/etc/mpfn/client/`, so the pool documents refer to them
as `file:` references (`register_command` prints them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from mpfn.deploy.spec import BACKEND_PORTS, DeployConfig, PoolConfig
from mpfn.routing.compat import OPENAI_ADAPTERS

Manifest = dict[str, Any]
ROUTER_PORT = 8080
PART_OF = "mpfn"
#: The user mpfn's images run as; their root filesystem may be read-only (HOME=/tmp).
MPFN_UID = 10001
CACHE_DIR = "/var/cache/mpfn"
#: In a pool's serving container: its TLS Secret (tls.crt, tls.key, ca.crt) and its
#: token Secret (tokens, admin-token).
POOL_TLS_DIR = "/etc/mpfn/tls"
POOL_TOKENS_DIR = "/etc/mpfn/pool-auth"
#: In the router and warmer: what they present to each pool, and their client certificate.
POOL_KEYS_DIR = "/etc/mpfn/pools"
CLIENT_TLS_DIR = "/etc/mpfn/client"
SECRET_MODE = 0o440  # readable by the pod's fsGroup (mpfn's uid) only
ROUTER_COMMAND = ["python3", "-m", "mpfn.functions.router"]
#: Image names `mpfn build` gives, tagged `latest`: what a config that names none renders.
PLACEHOLDER_WORKER = "mpfn-worker:latest"
PLACEHOLDER_ADAPTERS: Mapping[str, str] = {
    kind: f"mpfn-adapter-{kind}:latest" for kind in BACKEND_PORTS
}
PoolLayout = Literal["worker", "fronted", "direct"]


@dataclass(frozen=True)
class Images:
    """The image of each part. `pools` holds the images pools name themselves: the backend
    of `tfserving`, `torchserve` and native (`triton`, `openai`, ...) pools, or a worker
    image for an `ort` pool (default: `worker`). `adapters` is the adapter server image by
    backend kind."""

    router: str
    warmer: str | None
    pools: Mapping[str, str]
    worker: str = PLACEHOLDER_WORKER
    adapters: Mapping[str, str] = field(default_factory=lambda: dict(PLACEHOLDER_ADAPTERS))


def pool_layout(adapter: str) -> PoolLayout:
    """What a pool's pod runs: the ORT worker, a backend fronted by an adapter server in the
    same pod, or a backend that speaks the pool protocol (v2 or OpenAI) itself."""
    if adapter == "ort":
        return "worker"
    return "fronted" if adapter in BACKEND_PORTS else "direct"


def _labels(component: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def _meta(name: str, namespace: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": _labels(component, name)}


def _env(config: DeployConfig, state: str, extra: dict[str, str] | None = None) -> list[Any]:
    values = {**(extra or {}), "MPFN_STATE": state}
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _env_from(config: DeployConfig) -> list[Any]:
    secret = config.k8s.credentials_secret
    return [{"secretRef": {"name": secret, "optional": True}}] if secret else []


_SECURE = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
# mpfn's images: their user, and a read-only root (writes go to the /tmp emptyDir).
_MPFN_SECURE = {
    **_SECURE,
    "runAsUser": MPFN_UID,
    "runAsGroup": MPFN_UID,
    "readOnlyRootFilesystem": True,
}
_TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}
_CACHE_MOUNT = {"name": "cache", "mountPath": CACHE_DIR}


def _empty_dirs(*names: str) -> list[Any]:
    return [{"name": name, "emptyDir": {}} for name in names]


def _http_probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}}


def _pool_probe(pool: PoolConfig) -> dict[str, Any]:
    """Readiness of a pool's serving container: HTTPS when it serves TLS (the kubelet does
    not verify it), a TCP connect when it requires client certificates (the kubelet has
    none to present)."""
    if pool.client_certs:
        return {"tcpSocket": {"port": "http"}}
    probe = _http_probe("/v1/models" if pool.adapter in OPENAI_ADAPTERS else "/v2/health/ready")
    if pool.tls_secret:
        probe["httpGet"]["scheme"] = "HTTPS"
    return probe


def _secret_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": SECRET_MODE}}


def _serving_security(pool: PoolConfig) -> tuple[list[str], list[Any], list[Any]]:
    """The flags, volumes and mounts of a pool's serving container for its Secrets."""
    args: list[str] = []
    volumes: list[Any] = []
    mounts: list[Any] = []
    if pool.tls_secret:
        args += ["--tls-cert", f"{POOL_TLS_DIR}/tls.crt", "--tls-key", f"{POOL_TLS_DIR}/tls.key"]
        if pool.client_certs:
            args += ["--tls-client-ca", f"{POOL_TLS_DIR}/ca.crt"]
        volumes.append(_secret_volume("pool-tls", pool.tls_secret))
        mounts.append({"name": "pool-tls", "mountPath": POOL_TLS_DIR, "readOnly": True})
    if pool.token_secret:
        args += ["--token-file", f"{POOL_TOKENS_DIR}/tokens"]
        args += ["--admin-token-file", f"{POOL_TOKENS_DIR}/admin-token"]
        volumes.append(_secret_volume("pool-tokens", pool.token_secret))
        mounts.append({"name": "pool-tokens", "mountPath": POOL_TOKENS_DIR, "readOnly": True})
    return args, volumes, mounts


def client_keys(config: DeployConfig, *, admin: bool) -> tuple[list[Any], list[Any]]:
    """Volumes and mounts giving the router (`admin=False`) or the warmer what they present
    to secured pools: each pool's CA and token under POOL_KEYS_DIR/<id> (the admin token to
    the warmer only), the client certificate under CLIENT_TLS_DIR."""
    volumes: list[Any] = []
    mounts: list[Any] = []
    for index, pool in enumerate(config.pools):
        sources: list[Any] = []
        if pool.tls_secret:
            sources.append({"secret": {"name": pool.tls_secret, "items": [_item("ca.crt")]}})
        if pool.token_secret:
            items = [_item("token"), *([_item("admin-token")] if admin else [])]
            sources.append({"secret": {"name": pool.token_secret, "items": items}})
        if sources:
            name = f"pool-keys-{index}"
            volumes.append(
                {"name": name, "projected": {"defaultMode": SECRET_MODE, "sources": sources}}
            )
            mounts.append(
                {"name": name, "mountPath": f"{POOL_KEYS_DIR}/{pool.id}", "readOnly": True}
            )
    if config.k8s.client_tls_secret and any(p.client_certs for p in config.pools):
        volumes.append(_secret_volume("client-tls", config.k8s.client_tls_secret))
        mounts.append({"name": "client-tls", "mountPath": CLIENT_TLS_DIR, "readOnly": True})
    return volumes, mounts


def _fs_group(secret_volumes: list[Any]) -> dict[str, Any]:
    """A pod whose mpfn containers read Secret files gets mpfn's group on them."""
    return {"securityContext": {"fsGroup": MPFN_UID}} if secret_volumes else {}


def _item(key: str) -> dict[str, str]:
    return {"key": key, "path": key}


def cron_every(minutes: int) -> str:
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = max(1, minutes // 60)
    return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


def scaled_pools(config: DeployConfig) -> list[str]:
    """The Deployments of pools with max_replicas (the warmer sizes them)."""
    return [f"mpfn-pool-{p.id}" for p in config.pools if p.max_replicas is not None]


def router_wake_role(config: DeployConfig) -> list[Manifest]:
    """With scaled pools: the router may read and patch their scale, theirs only (to wake
    one from zero for a request), and gets its service account token for that."""
    names = scaled_pools(config)
    if not names:
        return []
    ns = config.k8s.namespace
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("mpfn-router-wake", ns, "router"),
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments/scale"],
                    "resourceNames": names,
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("mpfn-router-wake", ns, "router"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "mpfn-router-wake",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "mpfn-router", "namespace": ns}],
        },
    ]


def grpc_ports(config: DeployConfig) -> list[Manifest]:
    """The router container's gRPC port, when it serves the v2 gRPC API."""
    port = config.router.grpc_port
    return [{"name": "grpc", "containerPort": port}] if port else []


def grpc_service_ports(config: DeployConfig) -> list[Manifest]:
    port = config.router.grpc_port
    return (
        [{"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "grpc"}]
        if port
        else []
    )


def grpc_env(config: DeployConfig) -> dict[str, str]:
    port = config.router.grpc_port
    return {"MPFN_ROUTER_GRPC_PORT": str(port), "MPFN_ROUTER_GRPC_HOST": "0.0.0.0"} if port else {}


def router_objects(config: DeployConfig, state: str, image: str) -> list[Manifest]:
    ns, name = config.k8s.namespace, "mpfn-router"
    selector = {"app.kubernetes.io/name": name}
    memory = f"{config.router.memory_mb}Mi"
    key_volumes, key_mounts = client_keys(config, admin=False)
    container = {
        "name": "router",
        "image": image,
        "command": ROUTER_COMMAND,
        "args": ["--host", "0.0.0.0", "--port", str(ROUTER_PORT)],
        "ports": [{"name": "http", "containerPort": ROUTER_PORT}, *grpc_ports(config)],
        "env": _env(
            config, state, {**config.router.env, "PORT": str(ROUTER_PORT), **grpc_env(config)}
        ),
        "envFrom": _env_from(config),
        "readinessProbe": _http_probe("/v2/health/ready"),
        "livenessProbe": _http_probe("/v2/health/live"),
        "resources": {
            "requests": {"cpu": "250m", "memory": memory},
            "limits": {"memory": memory},
        },
        "volumeMounts": [_TMP_MOUNT, *key_mounts],
        "securityContext": _MPFN_SECURE,
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(name, ns, "router"),
            "spec": {
                "replicas": max(1, config.router.min_instances),
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": _labels("router", name)},
                    "spec": {
                        "serviceAccountName": name,
                        # its token only where it may wake scaled pools
                        "automountServiceAccountToken": bool(scaled_pools(config)),
                        "terminationGracePeriodSeconds": 30,
                        **_fs_group(key_volumes),
                        "containers": [container],
                        "volumes": [*_empty_dirs("tmp"), *key_volumes],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, ns, "router"),
            "spec": {
                "type": config.k8s.service_type,
                "selector": selector,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    *grpc_service_ports(config),
                ],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, ns, "router"),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": max(1, config.router.min_instances),
                "maxReplicas": max(1, config.router.max_instances),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": config.k8s.cpu_target_percent,
                            },
                        },
                    }
                ],
            },
        },
    ]


def _pool_args(pool: PoolConfig, *extra: str) -> list[str]:
    """The arguments of an mpfn server (worker or adapter server) serving `pool`."""
    return [
        *("--host", "0.0.0.0", "--port", str(pool.port)),
        *extra,
        *("--state", "$(MPFN_STATE)", "--cache-dir", CACHE_DIR),
    ]


def pool_containers(
    config: DeployConfig, state: str, pool: PoolConfig, images: Images
) -> list[Manifest]:
    """The containers of a pool's pod, the one serving `pool.port` first."""
    limits: dict[str, Any] = {"memory": pool.memory}
    if pool.gpus:
        limits["nvidia.com/gpu"] = pool.gpus
    layout = pool_layout(pool.adapter)
    serving: Manifest = {
        "ports": [{"name": "http", "containerPort": pool.port}],
        "readinessProbe": _pool_probe(pool),
        "resources": {"requests": {"cpu": pool.cpu, "memory": pool.memory}, "limits": limits},
    }
    secure_args, _, secure_mounts = _serving_security(pool)
    mpfn_part: Manifest = {
        "env": _env(config, state, {"MPFN_POOL_ID": pool.id, "PORT": str(pool.port)}),
        "envFrom": _env_from(config),
        "volumeMounts": [_TMP_MOUNT, _CACHE_MOUNT, *secure_mounts],
        "securityContext": _MPFN_SECURE,
    }
    if layout == "worker":
        image = images.pools.get(pool.id) or images.worker
        args = _pool_args(pool, *secure_args) + list(pool.args)
        return [{"name": "worker", "image": image, "args": args, **serving, **mpfn_part}]
    backend_port = pool.port if layout == "direct" else pool.backend_port
    backend: Manifest = {
        "name": "backend",
        "image": images.pools[pool.id],
        "args": list(pool.args),
        "env": [
            {"name": "MPFN_POOL_ID", "value": pool.id},
            {"name": "PORT", "value": str(backend_port)},
        ],
        "securityContext": _SECURE,
    }
    if layout == "direct":
        return [{**backend, **serving}]
    backend["volumeMounts"] = [_CACHE_MOUNT]  # shared: e.g. a model store the adapter fills
    adapter_args = _pool_args(pool, "--backend", f"http://127.0.0.1:{backend_port}", *secure_args)
    adapter = {
        "name": "adapter",
        "image": images.adapters[pool.adapter],
        "args": adapter_args + list(pool.adapter_args),
        **serving,
        **mpfn_part,
    }
    backend["resources"] = serving["resources"]
    adapter["resources"] = {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }
    return [adapter, backend]


def pool_objects(
    config: DeployConfig, state: str, pool: PoolConfig, images: Images
) -> list[Manifest]:
    ns, name = config.k8s.namespace, f"mpfn-pool-{pool.id}"
    selector = {"app.kubernetes.io/name": name}
    labels = {
        **_labels("adapter", name),
        "mpfn.dev/pool": pool.id,
        "mpfn.dev/adapter": pool.adapter,
    }
    containers = pool_containers(config, state, pool, images)
    _, secret_volumes, _ = _serving_security(pool)
    secrets = {v["name"] for v in secret_volumes}
    mounted = {m["name"] for c in containers for m in c.get("volumeMounts", [])} - secrets
    pod: Manifest = {"automountServiceAccountToken": False, "containers": containers}
    pod.update(_fs_group(secret_volumes))
    if mounted or secrets:
        pod["volumes"] = [*_empty_dirs(*sorted(mounted)), *secret_volumes]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                # a scaled pool's size is the warmer's and the routers': apply leaves it
                **({} if pool.max_replicas is not None else {"replicas": pool.replicas}),
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": pool.port, "targetPort": "http"}],
            },
        },
    ]


def access_objects(config: DeployConfig) -> list[Manifest]:
    ns = config.k8s.namespace
    ports = sorted({p.port for p in config.pools}) or [8000]
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": PART_OF}},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta("mpfn-router", ns, "router"),
            "automountServiceAccountToken": False,
        },
        *router_wake_role(config),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta("mpfn-warmer", ns, "warmer"),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("mpfn-warmer", ns, "warmer"),
            "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments/scale"],
                    "verbs": ["get", "patch", "update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("mpfn-warmer", ns, "warmer"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "mpfn-warmer",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "mpfn-warmer", "namespace": ns}],
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("mpfn-adapters-private", ns, "adapter"),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "adapter"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "podSelector": {
                                    "matchExpressions": [
                                        {
                                            "key": "app.kubernetes.io/component",
                                            "operator": "In",
                                            "values": ["router", "warmer"],
                                        }
                                    ]
                                }
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": port} for port in ports],
                    }
                ],
            },
        },
    ]


def warmer_objects(config: DeployConfig, state: str, image: str) -> list[Manifest]:
    ns, name = config.k8s.namespace, "mpfn-warmer"
    key_volumes, key_mounts = client_keys(config, admin=True)
    container = {  # the image's default command: one warmer run
        "name": "warmer",
        "image": image,
        "env": _env(config, state, dict(config.warmer_environment(state))),
        "envFrom": _env_from(config),
        "resources": {
            "requests": {"cpu": "500m", "memory": f"{config.warmer.memory_mb}Mi"},
            "limits": {"memory": f"{config.warmer.memory_mb}Mi"},
        },
        "volumeMounts": [_TMP_MOUNT, *key_mounts],
        "securityContext": _MPFN_SECURE,
    }
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _meta(name, ns, "warmer"),
            "spec": {
                "schedule": cron_every(config.warmer.every_minutes),
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "spec": {
                        "activeDeadlineSeconds": config.warmer.timeout_s,
                        "backoffLimit": 0,
                        "template": {
                            "metadata": {"labels": _labels("warmer", name)},
                            "spec": {
                                "serviceAccountName": name,
                                "restartPolicy": "Never",
                                **_fs_group(key_volumes),
                                "containers": [container],
                                "volumes": [*_empty_dirs("tmp"), *key_volumes],
                            },
                        },
                    }
                },
            },
        }
    ]


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-objects out in full: no YAML anchors in the manifests."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def file_name(manifest: Manifest) -> str:
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def render(config: DeployConfig, state: str, images: Images) -> dict[str, str]:
    """File name -> YAML text for every object, plus the kustomization listing them."""
    objects = access_objects(config) + router_objects(config, state, images.router)
    for pool in config.pools:
        objects += pool_objects(config, state, pool, images)
    if images.warmer:
        objects += warmer_objects(config, state, images.warmer)
    files = {
        file_name(m): yaml.dump(m, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        for m in objects
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = yaml.safe_dump(kustomization, sort_keys=False)
    return files


def pool_endpoint(config: DeployConfig, pool: PoolConfig) -> str:
    scheme = "https" if pool.tls_secret else "http"
    return f"{scheme}://{pool_host(config, pool)}:{pool.port}"


def pool_host(config: DeployConfig, pool: PoolConfig) -> str:
    """The pool Service's in-cluster name: what its TLS certificate must name."""
    return f"mpfn-pool-{pool.id}.{config.k8s.namespace}.svc.cluster.local"


def pool_references(pool: PoolConfig) -> dict[str, str]:
    """`mpfn pools add` options referring to what the router and warmer mount for `pool`."""
    keys = f"{POOL_KEYS_DIR}/{pool.id}"
    out: dict[str, str] = {}
    if pool.tls_secret:
        out["tls-ca"] = f"file:{keys}/ca.crt"
    if pool.client_certs:
        out["tls-cert"] = f"file:{CLIENT_TLS_DIR}/tls.crt"
        out["tls-key"] = f"file:{CLIENT_TLS_DIR}/tls.key"
    if pool.token_secret:
        out |= {"auth": "bearer", "token": f"file:{keys}/token"}
        out["admin-token"] = f"file:{keys}/admin-token"
    elif pool.client_certs:
        out["auth"] = "mtls"
    return out
