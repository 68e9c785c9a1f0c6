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
        ({"pools": [{"id": "cpu-a"}]}, "deploy.pools.cpu-a.image is required"),
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
