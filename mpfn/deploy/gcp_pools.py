"""Pools of the `gcp` target as Cloud Run services: names, images, limits and hardware from
`deploy.pools`, the Cloud Run v2 `Service` each one becomes, and that service read back.

Each pool runs in its own service `<prefix>-pool-<id>` with internal ingress. An `ort`
pool runs the worker (`images.worker` unless the pool names an image); a `tfserving` or
`torchserve` pool runs the adapter server (`images.adapters.<kind>`) as the ingress
container on `port` and the backend as a sidecar on `backend_port` (it starts first: the
adapter server depends on its TCP startup probe), sharing an in-memory cache volume; any
other kind runs its backend alone on `port`. Cloud Run offers one NVIDIA GPU per
instance (`gcp.gpu_type`), so a pool may ask for `hardware: [nvidia]` with `gpus: 1` and
nothing else but CPUs. Every config problem is a one-line `DeployConfigError` naming the
pool. No I/O: messages are built and read, never sent.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from mpfn.deploy.gcp_api import sdk
from mpfn.deploy.gcp_resources import RunPoolService, VpcAccess
from mpfn.deploy.k8s_manifests import CACHE_DIR, pool_layout
from mpfn.deploy.spec import DeployConfig, DeployConfigError, PoolConfig, require

#: Cloud Run service names: lowercase letters, digits and hyphens, at most 49 characters.
SERVICE_NAME_MAX = 49
#: CPUs Cloud Run gives a container (above 1, only these), and memory bounds in MiB.
CPUS = (1, 2, 4, 6, 8)
MEMORY_MIN_MIB, MEMORY_MAX_MIB = 512, 32 * 1024
#: Cloud Run's memory floor for an instance with 4 or more CPUs.
MEMORY_FLOOR_MIB = {4: 2048, 6: 4096, 8: 4096}
#: What a GPU instance needs at least.
GPU_MIN_CPUS, GPU_MIN_MIB = 4, 16 * 1024
#: The adapter server beside a backend: its own limits, added to the instance.
ADAPTER_CPU, ADAPTER_MIB = 1, 512
HARDWARE = frozenset({"cpu", "nvidia"})
INGRESS = {"internal": "INGRESS_TRAFFIC_INTERNAL_ONLY"}
_UNITS = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def service_name(config: DeployConfig, pool: PoolConfig) -> str:
    name = f"{config.prefix()}-pool-{pool.id}"
    if len(name) > SERVICE_NAME_MAX:
        raise DeployConfigError(
            f"pool {pool.id}: Cloud Run service name {name} is {len(name)} characters "
            f"(at most {SERVICE_NAME_MAX}); shorten deploy.name, the stage or the pool id"
        )
    return name


def memory_mib(pool: PoolConfig) -> int:
    """The pool's `memory` (a Kubernetes quantity: 2Gi, 512Mi, 4G, ...) in MiB."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", pool.memory.strip())
    if not match:
        raise DeployConfigError(
            f"pool {pool.id}: memory {pool.memory!r} is not a quantity like 2Gi or 512Mi"
        )
    size = Decimal(match.group(1)) * _UNITS[match.group(2) or ""]
    return math.ceil(size / 1024**2)


def memory_limit(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def cpu_count(pool: PoolConfig) -> int:
    """The pool's `cpu` (1, 2, 4000m, ...) as the whole CPUs Cloud Run gives."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m)?", pool.cpu.strip())
    count = None
    if match:
        value = Decimal(match.group(1)) / (1000 if match.group(2) else 1)
        count = int(value) if value == value.to_integral_value() else None
    if count not in CPUS:
        raise DeployConfigError(
            f"pool {pool.id}: cpu {pool.cpu!r}: a Cloud Run pool gets "
            f"{', '.join(map(str, CPUS[:-1]))} or {CPUS[-1]} CPUs"
        )
    return count


def hardware(pool: PoolConfig, gpu_type: str) -> str:
    """The accelerator of the pool's instances ("" for CPU only), or a one-line error for
    hardware Cloud Run cannot give."""
    other = sorted(set(pool.hardware) - HARDWARE)
    if other:
        raise DeployConfigError(
            f"pool {pool.id}: Cloud Run cannot give hardware {', '.join(other)} "
            "(only cpu, and one NVIDIA GPU with hardware nvidia and gpus 1)"
        )
    if pool.gpus > 1:
        raise DeployConfigError(
            f"pool {pool.id}: gpus {pool.gpus}: a Cloud Run instance has at most one GPU"
        )
    if ("nvidia" in pool.hardware) != (pool.gpus == 1):
        raise DeployConfigError(
            f"pool {pool.id}: a GPU pool on Cloud Run lists hardware nvidia and sets gpus 1 "
            f"(got hardware {', '.join(pool.hardware)}, gpus {pool.gpus})"
        )
    return gpu_type if pool.gpus else ""


def limits(pool: PoolConfig, accelerator: str) -> tuple[str, str]:
    """(cpu, memory) limits of the container running the pool's image, checked against
    what Cloud Run gives an instance (with the adapter server beside it, if any)."""
    cpus, mib = cpu_count(pool), memory_mib(pool)
    where = f"pool {pool.id}: cpu {pool.cpu}, memory {pool.memory}"
    if not MEMORY_MIN_MIB <= mib <= min(MEMORY_MAX_MIB, cpus * 4096):
        top = memory_limit(min(MEMORY_MAX_MIB, cpus * 4096))
        raise DeployConfigError(
            f"{where}: Cloud Run gives {cpus} CPU(s) between {MEMORY_MIN_MIB}Mi and {top}"
        )
    if mib < MEMORY_FLOOR_MIB.get(cpus, 0):
        floor = memory_limit(MEMORY_FLOOR_MIB[cpus])
        raise DeployConfigError(f"{where}: Cloud Run needs at least {floor} with {cpus} CPUs")
    if accelerator and (cpus < GPU_MIN_CPUS or mib < GPU_MIN_MIB):
        raise DeployConfigError(
            f"{where}: a GPU instance on Cloud Run needs at least {GPU_MIN_CPUS} CPUs and "
            f"{memory_limit(GPU_MIN_MIB)}"
        )
    if pool_layout(pool.adapter) == "fronted" and (
        cpus + ADAPTER_CPU > CPUS[-1] or mib + ADAPTER_MIB > MEMORY_MAX_MIB
    ):
        raise DeployConfigError(
            f"{where}: with the adapter server ({ADAPTER_CPU} CPU, {ADAPTER_MIB}Mi) the "
            f"instance exceeds Cloud Run's {CPUS[-1]} CPUs or {memory_limit(MEMORY_MAX_MIB)}"
        )
    return str(cpus), memory_limit(mib)


def images(config: DeployConfig, pool: PoolConfig) -> tuple[str, str]:
    """(the pool's image, the adapter server image or "") as `k8s.images_for` resolves
    them, or a one-line error naming the missing setting."""
    layout = pool_layout(pool.adapter)
    if layout == "worker":
        what = f"the mpfn-worker image ort pool {pool.id} runs without its own image"
        return pool.image or require(config.images.worker, "images.worker", "gcp", what), ""
    what = f"the {pool.adapter} backend's image"
    image = require(pool.image, f"pools.{pool.id}.image", "gcp", what)
    if layout == "direct":
        return image, ""
    setting, what = f"images.adapters.{pool.adapter}", f"the mpfn-adapter-{pool.adapter} image"
    return image, require(config.images.adapters.get(pool.adapter), setting, "gcp", what)


def _k8s_only(pool: PoolConfig) -> None:
    if pool.tls_secret or pool.token_secret or pool.client_certs:
        raise DeployConfigError(
            f"pool {pool.id}: tls_secret, client_certs and token_secret are k8s settings; "
            "a Cloud Run pool is reached over HTTPS with Google ID tokens"
        )


def desired(
    config: DeployConfig,
    pool: PoolConfig,
    *,
    state: str,
    service_account: str,
    vpc: VpcAccess,
    invokers: tuple[str, ...],
) -> RunPoolService:
    """The service running `pool`, reading the state at `state`."""
    _k8s_only(pool)
    name = service_name(config, pool)
    accelerator = hardware(pool, config.gcp.gpu_type)
    cpu, memory = limits(pool, accelerator)
    image, adapter_image = images(config, pool)
    serve = ("--host", "0.0.0.0", "--port", str(pool.port))
    reads = ("--state", state, "--cache-dir", CACHE_DIR)
    mpfn_env = (("MPFN_POOL_ID", pool.id), ("MPFN_STATE", state))
    layout = pool_layout(pool.adapter)
    settings: dict[str, Any] = {}
    if layout == "worker":
        settings.update(args=(*serve, *reads, *pool.args), environment=mpfn_env)
    else:
        settings.update(args=tuple(pool.args), environment=(("MPFN_POOL_ID", pool.id),))
    if layout == "fronted":
        backend_port = pool.backend_port or 0
        backend = ("--backend", f"http://127.0.0.1:{backend_port}")
        settings.update(
            adapter_image=adapter_image,
            adapter_args=(*serve, *backend, *reads, *pool.adapter_args),
            adapter_environment=mpfn_env,
            backend_port=backend_port,
        )
    return RunPoolService(
        name,
        image=image,
        port=pool.port,
        cpu=cpu,
        memory=memory,
        gpus=pool.gpus,
        accelerator=accelerator,
        # scaled: the revision allows up to max_replicas; the warmer sets the service's
        # minimum instances (mpfn.scaling), which deploy leaves alone
        min_instances=0 if pool.max_replicas is not None else pool.replicas,
        max_instances=pool.max_replicas or max(pool.replicas, 1),
        service_account=service_account,
        vpc=vpc,
        invokers=invokers,
        **settings,
    )


# -- Cloud Run v2 messages -----------------------------------------------------------------


def _env(run_v2: Any, pairs: tuple[tuple[str, str], ...]) -> list[Any]:
    return [run_v2.EnvVar(name=k, value=v) for k, v in pairs]


def service_message(svc: RunPoolService, vpc_access: Any) -> Any:
    """The `run_v2.Service` of a pool (`vpc_access` is its template's `VpcAccess`)."""
    run_v2 = sdk("google.cloud.run_v2")
    pool_limits = {"cpu": svc.cpu, "memory": svc.memory}
    if svc.gpus:
        pool_limits["nvidia.com/gpu"] = str(svc.gpus)
    port = [run_v2.ContainerPort(name="http1", container_port=svc.port)]
    main = run_v2.Container(
        image=svc.image,
        args=list(svc.args),
        env=_env(run_v2, svc.environment),
        resources=run_v2.ResourceRequirements(limits=pool_limits),
    )
    volumes: list[Any] = []
    if svc.adapter_image:
        mount = [run_v2.VolumeMount(name="cache", mount_path=CACHE_DIR)]
        main.name, main.volume_mounts = "backend", mount
        main.startup_probe = run_v2.Probe(
            tcp_socket=run_v2.TCPSocketAction(port=svc.backend_port),
            period_seconds=10,
            timeout_seconds=5,
            failure_threshold=30,
        )
        adapter = run_v2.Container(
            name="adapter",
            image=svc.adapter_image,
            args=list(svc.adapter_args),
            env=_env(run_v2, svc.adapter_environment),
            ports=port,
            resources=run_v2.ResourceRequirements(
                limits={"cpu": str(ADAPTER_CPU), "memory": f"{ADAPTER_MIB}Mi"}
            ),
            volume_mounts=mount,
            depends_on=["backend"],
        )
        containers = [adapter, main]
        medium = run_v2.EmptyDirVolumeSource.Medium.MEMORY
        volumes.append(
            run_v2.Volume(name="cache", empty_dir=run_v2.EmptyDirVolumeSource(medium=medium))
        )
    else:
        main.name, main.ports = "pool", port
        containers = [main]
    template = run_v2.RevisionTemplate(
        containers=containers,
        volumes=volumes,
        service_account=svc.service_account,
        scaling=run_v2.RevisionScaling(
            min_instance_count=svc.min_instances, max_instance_count=svc.max_instances
        ),
        vpc_access=vpc_access,
    )
    if svc.accelerator:
        template.node_selector = run_v2.NodeSelector(accelerator=svc.accelerator)
        template.gpu_zonal_redundancy_disabled = not svc.gpu_zonal_redundancy
    return run_v2.Service(
        ingress=run_v2.IngressTraffic[INGRESS[svc.ingress]],
        template=template,
    )


def _pairs(container: Any) -> tuple[tuple[str, str], ...]:
    return tuple((e.name, e.value) for e in container.env)


def observed(name: str, service: Any, vpc: VpcAccess, invokers: tuple[str, ...]) -> RunPoolService:
    """A pool service as read back (`vpc` and `invokers` read separately)."""
    template = service.template
    containers = list(template.containers)
    first = next((i for i, c in enumerate(containers) if c.ports), 0)
    ingress = containers[first]
    sidecars = containers[:first] + containers[first + 1 :]
    main = sidecars[0] if sidecars else ingress
    settings: dict[str, Any] = {}
    if sidecars:
        settings.update(
            adapter_image=ingress.image,
            adapter_args=tuple(ingress.args),
            adapter_environment=_pairs(ingress),
            backend_port=main.startup_probe.tcp_socket.port,
        )
    found = dict(main.resources.limits)
    accelerator = template.node_selector.accelerator
    names = {v: k for k, v in INGRESS.items()}
    return RunPoolService(
        name,
        image=main.image,
        args=tuple(main.args),
        environment=_pairs(main),
        port=ingress.ports[0].container_port if ingress.ports else 0,
        cpu=str(found.get("cpu", "")),
        memory=str(found.get("memory", "")),
        gpus=int(found.get("nvidia.com/gpu", "0") or 0),
        accelerator=accelerator,
        gpu_zonal_redundancy=bool(accelerator) and not template.gpu_zonal_redundancy_disabled,
        min_instances=template.scaling.min_instance_count,
        max_instances=template.scaling.max_instance_count,
        service_account=template.service_account,
        ingress=names.get(service.ingress.name, service.ingress.name.lower()),
        vpc=vpc,
        invokers=invokers,
        url=service.uri,
        **settings,
    )
