"""`mpfn deploy --export DIR`: SAM (cfn-lint clean), Terraform, k8s (valid), Grafana."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mpfn.config import load_config
from mpfn.deploy import Project, load_deploy_config
from mpfn.deploy.export import render_text
from mpfn.deploy.packaging import HANDLER, lambda_runtime
from tests.deploy.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
#: The warmer image on AWS Lambda: the runtime interface client calling the handler.
LAMBDA_ENTRYPOINT = ["python3", "-m", "awslambdaric"]
LAMBDA_COMMAND = ["mpfn.functions.warmer.lambda_handler.handler"]
INFRA = REPO / "infra"


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "cfn-lint"
    return subprocess.run([str(binary), str(template)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("export-project")
    (project / "mpfn.yaml").write_text((INFRA / "mpfn.yaml").read_text())
    result = run_cli(project, "deploy", "--export", "out", "--stage", "prod")
    assert result.returncode == 0, result.stderr
    return project / "out"


def test_export_writes_every_kind_of_file(exported: Path) -> None:
    assert zipfile.ZipFile(exported / "router.zip").testzip() is None
    template = yaml.safe_load((exported / "sam/template.yaml").read_text())
    router = template["Resources"]["RouterFunction"]["Properties"]
    assert router["Handler"] == HANDLER and router["CodeUri"] == "../router.zip"
    assert router["FunctionName"] == "mpfn-prod-router"
    assert template["Resources"]["StateBucket"]["DeletionPolicy"] == "Retain"
    warmer = template["Resources"]["WarmerFunction"]["Properties"]
    assert warmer["PackageType"] == "Image"
    assert warmer["ImageConfig"] == {"EntryPoint": LAMBDA_ENTRYPOINT, "Command": LAMBDA_COMMAND}
    module = json.loads((exported / "terraform/main.tf.json").read_text())
    functions = module["resource"]["aws_lambda_function"]
    assert functions["router"]["function_name"] == "mpfn-prod-router"
    assert functions["warmer"]["package_type"] == "Image"
    assert functions["warmer"]["image_config"] == {
        "entry_point": LAMBDA_ENTRYPOINT,
        "command": LAMBDA_COMMAND,
    }
    dashboard = json.loads((exported / "grafana/mpfn-dashboard.json").read_text())
    assert dashboard["title"] == "mpfn mpfn-prod" and len(dashboard["panels"]) == 26
    exprs = [t.get("expr", "") for p in dashboard["panels"] for t in p.get("targets", [])]
    assert any("mpfn_worker_request_seconds_bucket" in e for e in exprs)
    assert any("mpfn_router_request_seconds_bucket" in e for e in exprs)
    assert any("mpfn_router_admission_limit" in e for e in exprs)
    assert any("mpfn_pool_cost_per_hour" in e and "mpfn_pool_replicas" in e for e in exprs)


def test_sam_template_passes_cfn_lint(exported: Path) -> None:
    result = cfn_lint(exported / "sam/template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_exported_manifests_pass_kubernetes_validate(exported: Path) -> None:
    version = kubernetes_validate.latest_version()
    files = sorted((exported / "k8s").glob("*.yaml"))
    assert len(files) == 17
    for path in files:
        if path.name != "kustomization.yaml":
            kubernetes_validate.validate(yaml.safe_load(path.read_text()), version, strict=True)


def test_infra_directory_is_the_export_of_its_example_config() -> None:
    loaded = load_config(cwd=INFRA)
    config = load_deploy_config(loaded.options)
    files = render_text(
        config, Project(INFRA, loaded.state, dict(loaded.options)), lambda_runtime()
    )
    for rel, text in files.items():
        assert (INFRA / rel).read_text() == text, (
            f"infra/{rel} is stale: cd infra && mpfn deploy --export ."
        )
    on_disk = {
        str(p.relative_to(INFRA))
        for p in INFRA.rglob("*")
        if p.is_file() and p.parent != INFRA and ".terraform" not in p.parts
    }
    assert on_disk == set(files)


def test_exported_templates_carry_the_router_architecture() -> None:
    loaded = load_config(cwd=INFRA)
    config = load_deploy_config(loaded.options, assignments=("router.architecture=arm64",))
    project = Project(INFRA, loaded.state, dict(loaded.options))
    files = render_text(config, project, lambda_runtime())
    sam = yaml.safe_load(files["sam/template.yaml"])
    assert sam["Resources"]["RouterFunction"]["Properties"]["Architectures"] == ["arm64"]
    tf = json.loads(files["terraform/main.tf.json"])
    assert tf["resource"]["aws_lambda_function"]["router"]["architectures"] == ["arm64"]
