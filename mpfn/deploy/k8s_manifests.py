"""Kubernetes manifests for an mpfn deployment, rendered from the config. Pure.

One object per file, plus a `kustomization.yaml` listing them (`kubectl apply -k DIR`):

- Namespace; ServiceAccounts `mpfn-router` (no API token) and `mpfn-warmer`, with a Role
  that lets the warmer scale the adapter Deployments of its namespace and nothing else;
- the router: Deployment, Service and a CPU-based HorizontalPodAutoscaler;
- one Deployment and Service per adapter pool;
- a NetworkPolicy that admits traffic to adapter pods (whose load/unload and repository
  endpoints share the inference port) only from the router and the warmer;
- the warmer as a CronJob, when a warmer image is configured.

Pods read the state from the configured URL; credentials come from an optional Secret
(`k8s.credentials_secret`) as environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from mpfn.deploy.spec import DeployConfig, PoolConfig

Manifest = dict[str, Any]
ROUTER_PORT = 8080
PART_OF = "mpfn"


@dataclass(frozen=True)
class Images:
    router: str
    warmer: str | None
    pools: dict[str, str]


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


def cron_every(minutes: int) -> str:
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = max(1, minutes // 60)
    return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


def router_objects(config: DeployConfig, state: str, image: str) -> list[Manifest]:
    ns, name = config.k8s.namespace, "mpfn-router"
    selector = {"app.kubernetes.io/name": name}
    memory = f"{config.router.memory_mb}Mi"
    container = {
        "name": "router",
        "image": image,
        "ports": [{"name": "http", "containerPort": ROUTER_PORT}],
        "env": [*_env(config, state, config.router.env), {"name": "PORT", "value": "8080"}],
        "envFrom": _env_from(config),
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}},
        "resources": {
            "requests": {"cpu": "250m", "memory": memory},
            "limits": {"memory": memory},
        },
        "securityContext": _SECURE,
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
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 30,
                        "containers": [container],
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
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
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


def pool_objects(config: DeployConfig, state: str, pool: PoolConfig, image: str) -> list[Manifest]:
    ns, name = config.k8s.namespace, f"mpfn-pool-{pool.id}"
    selector = {"app.kubernetes.io/name": name}
    limits: dict[str, Any] = {"memory": pool.memory}
    if pool.gpus:
        limits["nvidia.com/gpu"] = pool.gpus
    container = {
        "name": "adapter",
        "image": image,
        "args": list(pool.args),
        "ports": [{"name": "http", "containerPort": pool.port}],
        "env": _env(config, state, {"MPFN_POOL_ID": pool.id, "PORT": str(pool.port)}),
        "envFrom": _env_from(config),
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}},
        "resources": {"requests": {"cpu": pool.cpu, "memory": pool.memory}, "limits": limits},
        "securityContext": _SECURE,
    }
    labels = {
        **_labels("adapter", name),
        "mpfn.dev/pool": pool.id,
        "mpfn.dev/adapter": pool.adapter,
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": pool.replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"automountServiceAccountToken": False, "containers": [container]},
                },
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
    container = {
        "name": "warmer",
        "image": image,
        "env": _env(config, state),
        "envFrom": _env_from(config),
        "resources": {
            "requests": {"cpu": "500m", "memory": f"{config.warmer.memory_mb}Mi"},
            "limits": {"memory": f"{config.warmer.memory_mb}Mi"},
        },
        "securityContext": _SECURE,
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
                                "containers": [container],
                            },
                        },
                    }
                },
            },
        }
    ]


def file_name(manifest: Manifest) -> str:
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def render(config: DeployConfig, state: str, images: Images) -> dict[str, str]:
    """File name -> YAML text for every object, plus the kustomization listing them."""
    objects = access_objects(config) + router_objects(config, state, images.router)
    for pool in config.pools:
        objects += pool_objects(config, state, pool, images.pools[pool.id])
    if images.warmer:
        objects += warmer_objects(config, state, images.warmer)
    files = {
        file_name(m): yaml.safe_dump(m, sort_keys=False, default_flow_style=False) for m in objects
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = yaml.safe_dump(kustomization, sort_keys=False)
    return files


def pool_endpoint(config: DeployConfig, pool: PoolConfig) -> str:
    return f"http://mpfn-pool-{pool.id}.{config.k8s.namespace}.svc.cluster.local:{pool.port}"
