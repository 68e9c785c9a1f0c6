"""Kubernetes pools on TLS with tokens and client certificates from Secrets: the serving
container mounts them and is started with the matching flags, the router and warmer mount
what they present (the admin token to the warmer only), probes still work, and the
printed `mpfn pools add` command refers to the mounted files."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from mpfn.deploy.k8s import register_command
from mpfn.deploy.k8s_manifests import Images, render
from mpfn.deploy.spec import DeployConfig

K8S_VERSION = kubernetes_validate.latest_version()
POOLS = [
    {
        "id": "secure",
        "tls_secret": "secure-tls",
        "client_certs": True,
        "token_secret": "secure-tok",
    },
    {"id": "tls-only", "tls_secret": "tls-only-tls", "port": 8001},
    {"id": "ts", "adapter": "torchserve", "token_secret": "ts-tok", "port": 8002},
    {"id": "plain", "port": 8003},
]


def config(pools: list[dict[str, Any]] = POOLS, **k8s: Any) -> DeployConfig:
    return DeployConfig.model_validate(
        {"pools": pools, "k8s": {"client_tls_secret": "mpfn-client", **k8s}}
    )


def objects(cfg: DeployConfig) -> dict[str, dict[str, Any]]:
    images = Images("r:1", "w:1", {p.id: "backend:1" for p in cfg.pools if p.adapter != "ort"})
    files = render(cfg, "s3://b/mpfn", images)
    out = {}
    for name, text in files.items():
        doc = yaml.safe_load(text)
        if name != "kustomization.yaml":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def pod(objs: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = objs[f"Deployment/{name}"]["spec"]["template"]["spec"]
    return spec


def test_a_secured_pool_serves_https_with_its_secrets_mounted() -> None:
    spec = pod(objects(config()), "mpfn-pool-secure")
    [worker] = spec["containers"]
    args = worker["args"]
    for flag, value in [
        ("--tls-cert", "/etc/mpfn/tls/tls.crt"),
        ("--tls-key", "/etc/mpfn/tls/tls.key"),
        ("--tls-client-ca", "/etc/mpfn/tls/ca.crt"),
        ("--token-file", "/etc/mpfn/pool-auth/tokens"),
        ("--admin-token-file", "/etc/mpfn/pool-auth/admin-token"),
    ]:
        assert args[args.index(flag) + 1] == value
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["pool-tls"]["secret"]["secretName"] == "secure-tls"
    assert volumes["pool-tokens"]["secret"]["secretName"] == "secure-tok"
    assert {"tmp", "cache"} <= set(volumes)
    mounts = {m["name"]: m for m in worker["volumeMounts"]}
    assert mounts["pool-tls"]["readOnly"] and mounts["pool-tokens"]["readOnly"]
    assert spec["securityContext"] == {"fsGroup": 10001}
    # the kubelet has no client certificate to present: a TCP probe
    assert worker["readinessProbe"] == {"tcpSocket": {"port": "http"}}


def test_probes_follow_the_scheme() -> None:
    objs = objects(config())
    [tls_only] = pod(objs, "mpfn-pool-tls-only")["containers"]
    assert tls_only["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    [plain] = pod(objs, "mpfn-pool-plain")["containers"]
    assert "scheme" not in plain["readinessProbe"]["httpGet"]
    assert "volumes" not in pod(objs, "mpfn-pool-plain") or all(
        "emptyDir" in v for v in pod(objs, "mpfn-pool-plain")["volumes"]
    )


def test_a_fronted_pool_requires_its_tokens_at_the_adapter_server() -> None:
    adapter, backend = pod(objects(config()), "mpfn-pool-ts")["containers"]
    assert adapter["name"] == "adapter" and "--token-file" in adapter["args"]
    assert "--token-file" not in backend["args"]
    assert all(m["name"] != "pool-tokens" for m in backend.get("volumeMounts", []))


def _mounted(spec: dict[str, Any]) -> dict[str, list[str]]:
    """mount path -> the Secret keys projected there."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    out: dict[str, list[str]] = {}
    for mount in spec["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "projected" in volume:
            sources = volume["projected"]["sources"]
            out[mount["mountPath"]] = [i["key"] for s in sources for i in s["secret"]["items"]]
        elif "secret" in volume:
            out[mount["mountPath"]] = [volume["secret"]["secretName"]]
    return out


def test_the_router_and_warmer_mount_what_they_present_and_only_the_warmer_the_admin_token() -> (
    None
):
    objs = objects(config())
    router = _mounted(pod(objs, "mpfn-router"))
    cron = objs["CronJob/mpfn-warmer"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    warmer = _mounted(cron)
    assert router["/etc/mpfn/pools/secure"] == ["ca.crt", "token"]
    assert warmer["/etc/mpfn/pools/secure"] == ["ca.crt", "token", "admin-token"]
    assert router["/etc/mpfn/pools/tls-only"] == ["ca.crt"]
    assert router["/etc/mpfn/pools/ts"] == ["token"]
    assert "/etc/mpfn/pools/plain" not in router
    assert router["/etc/mpfn/client"] == warmer["/etc/mpfn/client"] == ["mpfn-client"]
    assert pod(objs, "mpfn-router")["automountServiceAccountToken"] is False


def test_the_register_command_refers_to_the_mounted_files() -> None:
    cfg = config()
    secure = register_command(cfg, cfg.pools[0])
    assert "--endpoint https://mpfn-pool-secure.mpfn.svc.cluster.local:8000" in secure
    for option in [
        "--tls-ca file:/etc/mpfn/pools/secure/ca.crt",
        "--tls-cert file:/etc/mpfn/client/tls.crt",
        "--tls-key file:/etc/mpfn/client/tls.key",
        "--auth bearer --token file:/etc/mpfn/pools/secure/token",
        "--admin-token file:/etc/mpfn/pools/secure/admin-token",
    ]:
        assert option in secure
    plain = register_command(cfg, cfg.pools[3])
    assert "--endpoint http://" in plain and "--auth" not in plain and "--tls" not in plain


@pytest.mark.parametrize(
    ("pools", "k8s", "message"),
    [
        ([{"id": "a", "client_certs": True}], {}, "client_certs needs tls_secret"),
        ([{"id": "t", "adapter": "triton", "tls_secret": "x"}], {}, "serves its own TLS"),
        (
            [{"id": "a", "tls_secret": "x", "client_certs": True}],
            {"client_tls_secret": None},
            "set k8s.client_tls_secret",
        ),
    ],
)
def test_incomplete_security_settings_are_refused(
    pools: list[dict[str, Any]], k8s: dict[str, Any], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        config(pools, **k8s)
