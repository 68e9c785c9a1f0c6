"""Rendered Kubernetes containers -> `podman run` command lines (mpfn.deploy.podman). Pure."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mpfn.deploy.k8s_manifests import Images, render
from mpfn.deploy.podman import (
    UnsupportedSpec,
    container_env,
    container_spec,
    expand,
    pod_specs,
    readiness,
    renumber,
    run_argv,
)
from mpfn.deploy.spec import DeployConfig


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)z", "x1y2z"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$()", "$()"),
        ("$(A", "$(A"),
        ("$A $", "$A $"),
        ("a$$b", "a$b"),
        ("$(A)$(A)", "11"),
        ("--state=$(S)", "--state=s3://b/p"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2", "S": "s3://b/p"}) == expected


def test_env_values_expand_from_earlier_entries_only() -> None:
    container = {
        "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-$(C)"},
            {"name": "C", "value": "c"},
        ],
        "envFrom": [{"secretRef": {"name": "creds", "optional": True}}],
    }
    assert container_env(container) == {"A": "a", "B": "a-$(C)", "C": "c"}


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"env": [{"name": "K", "valueFrom": {"secretKeyRef": {}}}]}, "valueFrom"),
        ({"envFrom": [{"secretRef": {"name": "creds"}}]}, "'creds' is required"),
    ],
)
def test_env_without_local_meaning_is_refused(container: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedSpec, match=message):
        container_env(container)


def test_renumber_whole_values_and_host_ports_only() -> None:
    ports = {8000: 18000, 8501: 18501}
    assert renumber("8000", ports) == "18000"
    assert renumber("http://127.0.0.1:8501", ports) == "http://127.0.0.1:18501"
    assert renumber("http://h:8000/v2", ports) == "http://h:18000/v2"
    assert renumber("80001", ports) == "80001" and renumber("h:80001", ports) == "h:80001"


def test_container_translates_command_args_env_user_and_volumes() -> None:
    container = {
        "name": "worker",
        "image": "mpfn-worker:1",
        "command": ["python3", "-m", "x"],
        "args": ["--port", "8000", "--state", "$(MPFN_STATE)", "--literal", "$$(MPFN_STATE)"],
        "env": [{"name": "MPFN_STATE", "value": "s3://b/p"}, {"name": "PORT", "value": "8000"}],
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "cache", "mountPath": "/var/cache/mpfn"},
        ],
        "securityContext": {
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "readOnlyRootFilesystem": True,
        },
    }
    volumes = [{"name": "tmp", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]
    argv = run_argv(
        container, volumes, name="w", ports={8000: 18000}, volume_dirs={"cache": "/srv/c"}
    )
    assert argv == [
        *("podman", "run", "-d", "--rm", "--name", "w", "--network", "host"),
        *("--user", "10001:10001", "--read-only"),
        *("-e", "MPFN_STATE=s3://b/p", "-e", "PORT=18000"),
        *("-v", "/srv/c:/var/cache/mpfn", "--tmpfs", "/tmp"),
        *("--entrypoint", '["python3", "-m", "x"]', "mpfn-worker:1"),
        *("--port", "18000", "--state", "s3://b/p", "--literal", "$(MPFN_STATE)"),
    ]


def test_plain_container_keeps_the_image_entrypoint_and_a_writable_root() -> None:
    spec = container_spec({"image": "img", "securityContext": {"runAsNonRoot": True}}, name="n")
    assert spec.entrypoint is None and spec.args == () and spec.user is None
    assert not spec.read_only and spec.tmpfs == () and spec.volumes == ()


def test_only_empty_dirs_and_secrets_translate() -> None:
    container = {"image": "i", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    with pytest.raises(UnsupportedSpec, match="only emptyDir and Secret"):
        container_spec(container, [{"name": "data", "hostPath": {"path": "/x"}}], name="n")


def test_a_secret_volume_is_the_host_directory_given_for_it() -> None:
    container = {"image": "i", "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}]}
    volumes = [{"name": "tls", "secret": {"secretName": "pool-tls"}}]
    with pytest.raises(UnsupportedSpec, match="host directory holding its files"):
        container_spec(container, volumes, name="n")
    spec = container_spec(container, volumes, name="n", volume_dirs={"tls": "/srv/tls"})
    assert spec.volumes == (("/srv/tls", "/etc/tls"),)


def test_rendered_pods_translate_with_distinct_host_ports() -> None:
    config = DeployConfig.model_validate(
        {
            "pools": [
                {"id": "cpu-a"},
                {"id": "tf-a", "adapter": "tfserving", "image": "tensorflow/serving", "port": 8001},
            ]
        }
    )
    images = Images(router="mpfn-router:1", warmer=None, pools={"tf-a": "tensorflow/serving"})
    files = render(config, "s3://b/p", images)
    ports = {8080: 18080, 8000: 18000, 8001: 18001, 8501: 18501}
    pod = yaml.safe_load(files["deployment-mpfn-pool-tf-a.yaml"])["spec"]["template"]["spec"]
    adapter, backend = pod_specs(pod, prefix="tf-a", ports=ports)
    assert (adapter.name, backend.name) == ("tf-a-adapter", "tf-a-backend")
    assert adapter.args[:6] == (
        "--host",
        "0.0.0.0",
        "--port",
        "18001",
        "--backend",
        "http://127.0.0.1:18501",
    )
    assert "s3://b/p" in adapter.args and adapter.user == "10001:10001" and adapter.read_only
    assert adapter.tmpfs == ("/tmp", "/var/cache/mpfn") and backend.tmpfs == ("/var/cache/mpfn",)
    assert readiness(pod["containers"][0], ports) == (18001, "/v2/health/ready")
    assert readiness(pod["containers"][1], ports) is None

    router_pod = yaml.safe_load(files["deployment-mpfn-router.yaml"])["spec"]["template"]["spec"]
    [router] = pod_specs(router_pod, prefix="mpfn", ports=ports)
    assert router.entrypoint == ("python3", "-m", "mpfn.functions.router")
    assert router.args == ("--host", "0.0.0.0", "--port", "18080") and router.env["PORT"] == "18080"
    assert readiness(router_pod["containers"][0], ports) == (18080, "/v2/health/ready")
