"""`mpfn deploy --target k8s`: manifests rendered to a directory, planned file by file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mpfn.config import load_config
from mpfn.deploy import Action, DeployConfigError, Project, deploy, destroy, load_deploy_config
from mpfn.deploy.k8s import K8sTarget
from mpfn.deploy.record import RecordStore
from mpfn.store import LocalStore
from tests.deploy.conftest import run_cli

K8S_VERSION = kubernetes_validate.latest_version()


def k8s_project(directory: Path, **deploy: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "state": "./.mpfn",
        "deploy": {
            "target": "k8s",
            "router": {"image": "registry.example/mpfn-router:1", "min_instances": 2},
            "warmer": {"image": "registry.example/mpfn-warmer:1", "every_minutes": 10},
            "pools": [
                {"id": "cpu-a", "image": "registry.example/ort:1", "replicas": 2},
                {"id": "gpu-a", "image": "registry.example/ort:1", "gpus": 1, "port": 9000},
            ],
            "k8s": {"state": "s3://mpfn-cluster-state/mpfn", "out": "deploy/k8s"},
            **deploy,
        },
    }
    (directory / "mpfn.yaml").write_text(yaml.safe_dump(raw))
    return raw


def target_for(directory: Path, **kwargs: Any) -> K8sTarget:
    loaded = load_config(cwd=directory)
    config = load_deploy_config(loaded.options, **kwargs)
    return K8sTarget(config, Project(directory, loaded.state, dict(loaded.options)))


def manifests(directory: Path) -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))}


def test_render_validate_noop_shrink_destroy(tmp_path: Path) -> None:
    raw = k8s_project(tmp_path)
    out = tmp_path / "deploy/k8s"
    first = deploy(target_for(tmp_path), lambda _line: None)
    assert first.applied and first.plan.count(Action.CREATE) == len(first.plan.changes) == 15
    files = manifests(out)
    for name, manifest in files.items():
        if name != "kustomization.yaml":
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert sorted(files["kustomization.yaml"]["resources"]) == sorted(
        n for n in files if n != "kustomization.yaml"
    )

    kinds = sorted(m["kind"] for n, m in files.items() if n != "kustomization.yaml")
    assert kinds.count("Deployment") == 3 and kinds.count("Service") == 3
    assert {"HorizontalPodAutoscaler", "CronJob", "NetworkPolicy", "Role"} <= set(kinds)
    router = files["deployment-mpfn-router.yaml"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in router["containers"][0]["env"]}
    assert env["MPFN_STATE"] == "s3://mpfn-cluster-state/mpfn"
    assert router["automountServiceAccountToken"] is False
    hpa = files["horizontalpodautoscaler-mpfn-router.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    gpu = files["deployment-mpfn-pool-gpu-a.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert files["cronjob-mpfn-warmer.yaml"]["spec"]["schedule"] == "*/10 * * * *"

    # Adapter pods (management and inference share their port) admit only router and warmer.
    policy = files["networkpolicy-mpfn-adapters-private.yaml"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "adapter"}
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert peer["podSelector"]["matchExpressions"][0]["values"] == ["router", "warmer"]
    assert sorted(p["port"] for p in rule["ports"]) == [8000, 9000]
    for pool in ("cpu-a", "gpu-a"):
        labels = files[f"deployment-mpfn-pool-{pool}.yaml"]["spec"]["template"]["metadata"]
        assert labels["labels"]["app.kubernetes.io/component"] == "adapter"

    # Recorded in the project's state.
    record = RecordStore(lambda: LocalStore(tmp_path / ".mpfn"), "k8s", "dev").read()
    assert record is not None and record.complete and len(record.resources) == 15

    # Unchanged config: no-op. One pool fewer: its two files go, two files change.
    assert not deploy(target_for(tmp_path), lambda _line: None).applied
    raw["deploy"]["pools"] = raw["deploy"]["pools"][:1]
    (tmp_path / "mpfn.yaml").write_text(yaml.safe_dump(raw))
    shrink = deploy(target_for(tmp_path), lambda _line: None)
    changed = {(c.action, c.name) for c in shrink.plan if c.action is not Action.KEEP}
    assert changed == {
        (Action.DELETE, "deployment-mpfn-pool-gpu-a.yaml"),
        (Action.DELETE, "service-mpfn-pool-gpu-a.yaml"),
        (Action.UPDATE, "kustomization.yaml"),
        (Action.UPDATE, "networkpolicy-mpfn-adapters-private.yaml"),
    }
    assert not (out / "deployment-mpfn-pool-gpu-a.yaml").exists()

    destroy(target_for(tmp_path), lambda _line: None)
    assert list(out.glob("*.yaml")) == []
    assert RecordStore(lambda: LocalStore(tmp_path / ".mpfn"), "k8s", "dev").read() is None


def test_validation_rejects_a_broken_manifest() -> None:
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"router": {}}, "deploy.router.image is required for --target k8s"),
        ({"pools": [{"id": "cpu-a"}]}, "deploy.images.worker is required"),
        (
            {"pools": [{"id": "tf-a", "adapter": "tfserving"}]},
            "deploy.pools.tf-a.image is required for --target k8s (the tfserving backend's",
        ),
        (
            {"pools": [{"id": "tf-a", "adapter": "tfserving", "image": "tensorflow/serving"}]},
            "deploy.images.adapters.tfserving is required",
        ),
        (
            {"pools": [{"id": "tr", "adapter": "triton", "image": "x", "backend_port": 9}]},
            "backend_port and adapter_args apply only to pools with an adapter server",
        ),
        (
            {"pools": [{"id": "ts", "adapter": "torchserve", "image": "x", "backend_port": 8000}]},
            "backend_port 8000 is the adapter server's port",
        ),
        ({"images": {"adapters": {"triton": "x"}}}, "no adapter server image applies to triton"),
        ({"k8s": {}}, "--target k8s needs an s3:// or gs:// state the pods can reach"),
        ({"pools": [{"id": "cpu_a", "image": "x"}]}, "pools.0.id: String should match"),
    ],
)
def test_k8s_config_errors(tmp_path: Path, edit: dict[str, Any], message: str) -> None:
    k8s_project(tmp_path, **edit)
    with pytest.raises(DeployConfigError) as error:
        target_for(tmp_path)
    assert message in str(error.value)
    assert not (tmp_path / "deploy").exists()


def test_cli_dry_run_then_deploy_then_status(tmp_path: Path) -> None:
    k8s_project(tmp_path)
    dry = run_cli(tmp_path, "deploy", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "15 to create" in dry.stdout and not (tmp_path / "deploy").exists()
    assert not (tmp_path / ".mpfn").exists()
    done = run_cli(tmp_path, "deploy")
    assert done.returncode == 0, done.stderr
    assert "kubectl apply -k" in done.stdout and "mpfn pools add cpu-a" in done.stdout
    status = run_cli(tmp_path, "deploy", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"deployed": true' in status.stdout and '"complete": true' in status.stdout


LAYOUT_POOLS = [
    {"id": "cpu-a"},
    {
        "id": "cuda-a",
        "image": "registry.example/mpfn-worker-cuda:1",
        "args": ["--memory-mb", "900"],
    },
    {"id": "tf-a", "adapter": "tfserving", "image": "tensorflow/serving:2.14.1", "port": 8001},
    {
        "id": "ts-a",
        "adapter": "torchserve",
        "image": "pytorch/torchserve:0.12",
        "port": 8002,
        "backend_port": 8090,
        "args": ["torchserve", "--foreground"],
        "adapter_args": ["--option", "model_store=/var/cache/mpfn/store"],
    },
    {"id": "tr-a", "adapter": "triton", "image": "nvcr.io/triton:24.05", "port": 8003},
    {"id": "llm", "adapter": "openai", "image": "vllm/vllm-openai:v0.5", "port": 8004},
]
IMAGES: dict[str, Any] = {
    "worker": "registry.example/mpfn-worker:1",
    "adapters": {
        "tfserving": "registry.example/mpfn-adapter-tfserving:1",
        "torchserve": "registry.example/mpfn-adapter-torchserve:1",
    },
}


def pods(target: K8sTarget) -> dict[str, dict[str, Any]]:
    """Pool id -> pod spec of its Deployment."""
    return {
        name.removeprefix("deployment-mpfn-pool-").removesuffix(".yaml"): yaml.safe_load(text)[
            "spec"
        ]["template"]["spec"]
        for name, text in target.files.items()
        if name.startswith("deployment-mpfn-pool-")
    }


def test_each_kind_of_pool_runs_what_serves_its_port(tmp_path: Path) -> None:
    k8s_project(tmp_path, pools=LAYOUT_POOLS, images=IMAGES)
    target = target_for(tmp_path)
    for name, text in target.files.items():
        if name != "kustomization.yaml":
            manifest = yaml.safe_load(text)
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
            assert "&id" not in text  # no YAML anchors
    found = pods(target)
    common = ["--state", "$(MPFN_STATE)", "--cache-dir", "/var/cache/mpfn"]

    [worker] = found["cpu-a"]["containers"]
    assert worker["image"] == IMAGES["worker"] and "command" not in worker
    assert worker["args"] == ["--host", "0.0.0.0", "--port", "8000", *common]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {"name": "cache", "mountPath": "/var/cache/mpfn"} in worker["volumeMounts"]
    assert {v["name"] for v in found["cpu-a"]["volumes"]} == {"cache", "tmp"}
    assert worker["securityContext"]["runAsUser"] == 10001
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    [cuda] = found["cuda-a"]["containers"]
    assert cuda["image"].endswith("mpfn-worker-cuda:1") and cuda["args"][-2:] == [
        "--memory-mb",
        "900",
    ]

    adapter, backend = found["ts-a"]["containers"]
    assert (adapter["name"], backend["name"]) == ("adapter", "backend")
    assert adapter["image"] == IMAGES["adapters"]["torchserve"]
    assert adapter["args"] == [
        *("--host", "0.0.0.0", "--port", "8002", "--backend", "http://127.0.0.1:8090"),
        *common,
        *("--option", "model_store=/var/cache/mpfn/store"),
    ]
    assert adapter["ports"] == [{"name": "http", "containerPort": 8002}]
    assert backend["image"] == "pytorch/torchserve:0.12"
    assert backend["args"] == ["torchserve", "--foreground"] and "ports" not in backend
    assert backend["volumeMounts"] == [{"name": "cache", "mountPath": "/var/cache/mpfn"}]
    tf_adapter, _tf_backend = found["tf-a"]["containers"]
    assert "--backend" in tf_adapter["args"]
    assert tf_adapter["args"][tf_adapter["args"].index("--backend") + 1] == "http://127.0.0.1:8501"

    for pool, path in (("tr-a", "/v2/health/ready"), ("llm", "/v1/models")):
        [native] = found[pool]["containers"]
        assert native["name"] == "backend" and native["args"] == []
        assert native["readinessProbe"]["httpGet"]["path"] == path
        assert "volumes" not in found[pool]

    router = yaml.safe_load(target.files["deployment-mpfn-router.yaml"])
    [container] = router["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python3", "-m", "mpfn.functions.router"]
    assert container["args"] == ["--host", "0.0.0.0", "--port", "8080"]
    cron = yaml.safe_load(target.files["cronjob-mpfn-warmer.yaml"])
    [warmer] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert "command" not in warmer and "args" not in warmer

    notes = "\n".join(target.notes())
    assert (
        "mpfn pools add ts-a --endpoint http://mpfn-pool-ts-a.mpfn.svc.cluster.local:8002" in notes
    )
    assert (
        "--adapter torchserve --hardware cpu --cost-per-hour 0 --capacity 4 --adapter-server"
        in notes
    )
    plain = "--hardware cpu --cost-per-hour 0 --capacity 4\n"
    assert f"--adapter triton {plain}" in notes + "\n" and f"--adapter ort {plain}" in notes + "\n"


def test_grpc_port_and_scaled_pools_in_the_manifests(tmp_path: Path) -> None:
    k8s_project(
        tmp_path,
        router={"image": "registry.example/mpfn-router:1", "grpc_port": 9001},
        pools=[{"id": "cpu-a", "image": "registry.example/ort:1", "max_replicas": 4}],
    )
    deploy(target_for(tmp_path), lambda _line: None)
    files = manifests(tmp_path / "deploy/k8s")
    for name, manifest in files.items():
        if name != "kustomization.yaml":
            for doc in manifest if isinstance(manifest, list) else [manifest]:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    docs = [d for m in files.values() for d in (m if isinstance(m, list) else [m])]
    by = {
        (d.get("kind"), d.get("metadata", {}).get("name")): d for d in docs if isinstance(d, dict)
    }
    router = by[("Deployment", "mpfn-router")]["spec"]["template"]["spec"]
    assert {"name": "grpc", "containerPort": 9001} in router["containers"][0]["ports"]
    assert router["automountServiceAccountToken"] is True  # it may wake the scaled pool
    service = by[("Service", "mpfn-router")]["spec"]["ports"]
    assert {"name": "grpc", "port": 9001, "targetPort": "grpc", "appProtocol": "grpc"} in service
    pool = by[("Deployment", "mpfn-pool-cpu-a")]["spec"]
    assert "replicas" not in pool  # the warmer's and the routers' to set
    wake = by[("Role", "mpfn-router-wake")]["rules"]
    assert wake == [{"apiGroups": ["apps"], "resources": ["deployments/scale"],
                     "resourceNames": ["mpfn-pool-cpu-a"], "verbs": ["get", "patch"]}]  # fmt: skip
