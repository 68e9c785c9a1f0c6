"""`mpfn deploy --export DIR`: the infrastructure-as-code for a config, written to files.

    DIR/router.zip                   the router Lambda package (same bytes deploy uploads)
    DIR/sam/template.yaml            SAM/CloudFormation (CodeUri ../router.zip)
    DIR/terraform/main.tf.json       Terraform module for the AWS shape
    DIR/k8s/*.yaml                   Kubernetes manifests + kustomization.yaml
    DIR/grafana/mpfn-dashboard.json  Grafana dashboard

Settings the config leaves open (a local state, images not built yet) get placeholders
named so they are easy to find and replace. Nothing here touches a cloud.
"""

from __future__ import annotations

from pathlib import Path

from mpfn.deploy import grafana, k8s_manifests, packaging, sam, terraform
from mpfn.deploy.spec import DeployConfig
from mpfn.deploy.targets import Project
from mpfn.store import split_bucket_url


def aws_state(config: DeployConfig, project: Project) -> tuple[str, str]:
    url = config.aws.state or project.state
    if url.startswith("s3://"):
        return split_bucket_url(url)
    return f"{config.prefix()}-state", "mpfn"


def pod_state(config: DeployConfig, project: Project) -> str:
    state = config.k8s.state or project.state
    if state.startswith(("s3://", "gs://")):
        return state
    bucket, prefix = aws_state(config, project)
    return f"s3://{bucket}/{prefix}"


def placeholder_images(config: DeployConfig) -> k8s_manifests.Images:
    """The configured images, and `mpfn build`'s names (tag `latest`) for those left open;
    a backend image nobody named stays visibly unset (`<kind>-backend:unset`)."""
    worker = config.images.worker or k8s_manifests.PLACEHOLDER_WORKER
    pools = {
        p.id: p.image
        or (
            worker
            if k8s_manifests.pool_layout(p.adapter) == "worker"
            else f"{p.adapter}-backend:unset"
        )
        for p in config.pools
    }
    adapters = {**k8s_manifests.PLACEHOLDER_ADAPTERS, **config.images.adapters}
    return k8s_manifests.Images(
        router=config.router.image or "mpfn-router:latest",
        warmer=config.warmer.image or "mpfn-warmer:latest",
        pools=pools,
        worker=worker,
        adapters=adapters,
    )


def render_text(config: DeployConfig, project: Project, runtime: str) -> dict[str, str]:
    """Relative path -> text of every generated file (the zip excluded). Pure."""
    bucket, prefix = aws_state(config, project)
    files = {
        "sam/template.yaml": sam.render(config, bucket, prefix, runtime).replace(
            "CodeUri: router.zip", "CodeUri: ../router.zip"
        ),
        "terraform/main.tf.json": terraform.render(config, bucket, prefix, runtime),
        "grafana/mpfn-dashboard.json": grafana.render(
            config.prefix(), config.aws.region or "us-east-1"
        ),
    }
    manifests = k8s_manifests.render(config, pod_state(config, project), placeholder_images(config))
    files.update({f"k8s/{name}": text for name, text in manifests.items()})
    return files


def export_all(config: DeployConfig, project: Project, out: Path) -> list[Path]:
    """Write every file under `out` (and build the router zip there); return the paths."""
    package = packaging.build(out, config.router.architecture)
    written = [package.path]
    for rel, text in sorted(render_text(config, project, package.runtime).items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
