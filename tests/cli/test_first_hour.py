"""What a new user meets first: one-line errors, options in any position, hints that can be
followed, read-only commands that leave nothing behind, and the LLM registration path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mpfn.cli.common import handle_errors
from mpfn.cli.main import app

MPFN = [sys.executable, "-m", "mpfn"]
SCRIPT = Path(sys.executable).parent / "mpfn"  # the console script of this environment
REPO = Path(__file__).resolve().parents[2]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, argv0: list[str] = MPFN
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MPFN_", "GOOGLE_"))}
    full_env.update(env or {})
    return subprocess.run(
        [*argv0, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- 1. errors are one line; --debug shows the traceback --------------------------------

GCP_YAML = """\
state: gs://mpfn-test-bucket/state
deploy:
  gcp: {project: my-project-1, region: europe-west1}
  router: {image: europe-docker.pkg.dev/p/r/router:1}
"""


def no_google_credentials(home: Path) -> dict[str, str]:
    # no ADC file, no gcloud config, and no probing of a GCE metadata server
    return {"HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"), "NO_GCE_CHECK": "True"}


def test_gcp_without_credentials_says_how_to_provide_them(tmp_path: Path) -> None:
    (tmp_path / "mpfn.yaml").write_text(GCP_YAML)
    env = no_google_credentials(tmp_path)
    proc = run(["deploy", "--target", "gcp", "--dry-run"], tmp_path, env)
    line = one_line_error(proc, "no Google Cloud credentials", "GOOGLE_APPLICATION_CREDENTIALS")
    assert "gcloud auth application-default login" in line
    debug = run(["deploy", "--target", "gcp", "--dry-run", "--debug"], tmp_path, env)
    assert "Traceback" in debug.stderr and "DefaultCredentialsError" in debug.stderr


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = typer.Typer()

    @broken.command()
    @handle_errors
    def boom() -> None:
        raise RuntimeError("the disk\nis on fire")

    monkeypatch.delenv("MPFN_DEBUG", raising=False)
    result = CliRunner().invoke(broken, [])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: RuntimeError: the disk is on fire (`" + result.stderr.split("(`")[1].strip()
    ]
    assert "--debug" in result.stderr and "Traceback" not in result.stderr
    monkeypatch.setenv("MPFN_DEBUG", "1")
    result = CliRunner().invoke(broken, [])
    assert "Traceback" in result.stderr and "RuntimeError: the disk" in result.stderr


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    line = one_line_error(run(["keys", "create", "k", "--rate", "-1"], tmp_path), "'--rate'")
    assert "rate_per_s" not in line and "keys create --help" in line
    one_line_error(run(["models", "lst"], tmp_path), "No such command 'lst'")


# -- 2. every missing cloud setting in one run ------------------------------------------


def test_aws_reports_every_missing_setting_at_once(tmp_path: Path) -> None:
    line = one_line_error(run(["deploy", "--target", "aws", "--dry-run"], tmp_path))
    assert "deploy.aws.region is required" in line and "--region REGION" in line
    assert "--target aws needs an s3:// state" in line
    assert "missing 2 things" in line


def test_gcp_reports_every_missing_setting_at_once(tmp_path: Path) -> None:
    line = one_line_error(run(["deploy", "--target", "gcp", "--dry-run"], tmp_path))
    for setting in ("gcp.project", "gcp.region", "router.image"):
        assert f"deploy.{setting} is required for --target gcp" in line
    assert "gs:// state" in line and "missing 4 things" in line


def test_cloud_problems_name_a_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpfn.deploy import spec

    monkeypatch.setattr(spec, "_installed", lambda module: False)
    problems = spec.cloud_problems(spec.DeployConfig(), "file:///x", "aws")
    assert problems[-1].startswith("boto3 is not installed:") and "-e '" in problems[-1]


def test_dry_run_help_says_it_reads_the_cloud() -> None:
    out = CliRunner().invoke(app, ["deploy", "--help"], env={"COLUMNS": "200"}).output
    assert "live credentials" in out


# -- 3. options in any position; --version; clean help -----------------------------------


def test_global_options_after_the_command(tmp_path: Path) -> None:
    state = tmp_path / "st"
    assert run(["--state", str(state), "init", str(tmp_path / "p")], tmp_path).returncode == 0
    listed = run(["models", "list", "--state", str(state), "--json"], tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    before = run(["--json", "--state", str(state), "models", "list"], tmp_path)
    assert before.returncode == 0 and json.loads(before.stdout) == []
    status = run(["status", "--json", "--debug", f"--state={state}"], tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == f"file://{state}"


def test_a_subcommands_own_state_option_is_left_alone() -> None:
    from mpfn.cli.options import normalize_args

    root = typer.main.get_command(app)
    ctx = root.make_context("mpfn", ["--help"], resilient_parsing=True)
    args = ["state", "add-site", "b", "--state", "/r", "--debug"]
    assert normalize_args(root, ctx, args) == ["--debug", *args[:-1]]
    moved = normalize_args(root, ctx, ["--json", "deploy", "status", "--target", "local"])
    assert moved == ["deploy", "status", "--json", "--target", "local"]


def test_deploy_status_takes_target_after_status(tmp_path: Path) -> None:
    for args in (
        ["deploy", "status", "--target", "local"],
        ["deploy", "--target", "local", "status"],
    ):
        proc = run([*args, "--json", "--stage", "qa"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert (info["target"], info["stage"]) == ("local", "qa")
    logs = run(["deploy", "logs", "--target", "local", "--set", "local.port=0"], tmp_path)
    assert logs.returncode == 0, logs.stderr


def test_version(tmp_path: Path) -> None:
    proc = run(["--version"], tmp_path)
    assert proc.returncode == 0 and re.fullmatch(r"mpfn \S+\n", proc.stdout)


def test_help_has_no_python_type_metavars() -> None:
    from tests.cli.test_help import COMMANDS

    for path in COMMANDS:
        out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output
        assert "<bool>" not in out and "<list[" not in out, (path, out)
    status_help = CliRunner().invoke(app, ["deploy", "status", "--help"]).output
    assert "plan and outcome" not in status_help and "--target" in status_help


# -- 4. hints name the command as run; reading creates no state ------------------------


@pytest.mark.skipif(not SCRIPT.is_file(), reason="no console script in this environment")
def test_hints_name_the_command_as_it_was_run(tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p) != SCRIPT.parent)  # fmt: skip
    proc = run(
        ["invoke", "demo", "--input", '{"x": [[1.0]]}'], tmp_path, {"PATH": path}, [str(SCRIPT)]
    )
    one_line_error(proc, f"start `{SCRIPT} up`", f"no state at {tmp_path / '.mpfn'}")
    via_module = run(["warm", "plan", "--last"], tmp_path)
    one_line_error(via_module, f"{sys.executable} -m mpfn warm run")


def test_reading_commands_create_no_state(tmp_path: Path) -> None:
    for args in (
        ["status"],
        ["models", "list"],
        ["pools", "list"],
        ["keys", "list"],
        ["invoke", "demo", "--input", '{"x": [[1.0]]}'],
        ["deploy", "status", "--target", "local"],
    ):
        run(args, tmp_path)
        assert not (tmp_path / ".mpfn").exists(), args
    run(["keys", "create", "k"], tmp_path)
    assert (tmp_path / ".mpfn").is_dir()  # the first write makes it


def test_lazy_local_store_reads_as_empty(tmp_path: Path) -> None:
    from mpfn.store import KeyNotFound
    from mpfn.store.local import LocalStore

    store = LocalStore(tmp_path / "s", create="on-write")
    assert store.list() == [] and not (tmp_path / "s").exists()
    with pytest.raises(KeyNotFound):
        store.get("a.json")
    with pytest.raises(KeyNotFound):
        store.delete("a.json")
    store.put("a/b.json", b"{}")
    assert store.list() == ["a/b.json"]


# -- 5. warm simulate and report --------------------------------------------------------


def hour_trace(path: Path) -> Path:
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    rows += [f"2023-11-16 18:{m:02d}:01.0000000,10,10" for m in range(60)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_simulate_says_when_the_holdout_covers_the_whole_trace(tmp_path: Path) -> None:
    trace = hour_trace(tmp_path / "t.csv")
    proc = run(["warm", "simulate", "--trace", str(trace), "--policy", "none", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "note: the trace spans 59 min, no more than --holdout-days 7" in proc.stderr
    assert json.loads(proc.stdout)["requests"] == 60


def test_replay_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from mpfn.cli.warm import ProgressReport
    from mpfn.simulator import KeepAlive, replay
    from mpfn.simulator.traces import Request

    trace = [Request(60.0 * i, "m") for i in range(12000)]
    report = ProgressReport("keepalive:60", len(trace), after_s=0.0, every_s=0.0)
    replay(trace, KeepAlive(60), 1.0, progress=report)
    report.finish()
    err = capsys.readouterr().err
    assert "simulate keepalive:60: 0 % of 12,000 requests replayed" in err
    assert "% of 12,000 requests" in err and "simulate keepalive:60: done in" in err


def test_pareto_axes_start_at_zero_without_an_offset(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mpfn.simulator.pareto import set_axes

    fig, ax = plt.subplots()
    ax.plot([533.0, 533.12], [10.8, 12.6], "o")
    set_axes(ax, [533.0, 533.12], [10.8, 12.6])
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    assert lo <= 0 < 533.12 < hi
    assert ax.get_ylim()[0] <= 0 and ax.xaxis.get_major_formatter().get_offset() == ""
    plt.close(fig)


def test_report_without_usage_says_so(tmp_path: Path) -> None:
    from mpfn.demo import build_demo_model

    (tmp_path / "m.onnx").write_bytes(build_demo_model())
    assert (
        run(["models", "push", "m.onnx", "--name", "m", "--version", "1"], tmp_path).returncode == 0
    )
    proc = run(["warm", "report", "--out", "charts"], tmp_path)
    one_line_error(proc, "no usage or forecasts to draw")
    assert not (tmp_path / "charts").exists()


# -- 6, 7. models, keys, build directory ------------------------------------------------


def test_models_push_register_list_pull_digests_and_labels(tmp_path: Path) -> None:
    from mpfn.demo import build_demo_model

    (tmp_path / "m.onnx").write_bytes(build_demo_model())
    (tmp_path / "README.md").write_text("# not a model\n")
    one_line_error(
        run(["models", "push", "README.md", "--name", "r", "--version", "1"], tmp_path),
        "not a model file",
        "--format",
    )
    other = run(
        ["models", "push", "README.md", "--name", "r", "--version", "1", "--format", "other"],
        tmp_path,
    )
    assert other.returncode == 0, other.stderr
    pushed = run(
        ["models", "push", "m.onnx", "--name", "m", "--version", "1", "--label", "team=a"], tmp_path
    )
    assert pushed.returncode == 0 and "manifest sha256:" in pushed.stdout
    registered = run(
        ["models", "register", "chat", "--format", "openai", "--served-model", "smollm2",
         "--label", "team=llm", "--json"],
        tmp_path,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    doc = json.loads(registered.stdout)
    assert (doc["format"], doc["version"], doc["artifact"]) == ("openai", "1", None)
    assert doc["labels"] == {"team": "llm", "served_model": "smollm2"}
    one_line_error(run(["models", "register", "x", "--format", "onnx"], tmp_path), "models push")
    one_line_error(run(["models", "register", "x", "--label", "novalue"], tmp_path), "KEY=VALUE")
    listed = {m["name"]: m for m in json.loads(run(["models", "list", "--json"], tmp_path).stdout)}
    assert listed["m"]["labels"] == {"team": "a"}
    art = listed["m"]["artifact"]
    table = run(["models", "list"], tmp_path, {"COLUMNS": "200"}).stdout
    assert "manifest digest" in table and art["digest"][:19] in table
    pulled = run(["models", "pull", "m", "--out", "back.onnx"], tmp_path, {"COLUMNS": "300"})
    assert f"manifest {art['digest']}" in pulled.stdout
    assert f"file {art['blob_digest']}" in pulled.stdout


def test_the_router_build_happens_outside_the_project(tmp_path: Path) -> None:
    from mpfn.deploy.spec import DeployConfig

    build_dir = Path(DeployConfig().build_dir)
    assert build_dir.is_absolute() and not build_dir.is_relative_to(REPO)
    assert DeployConfig(build_dir="here").build_dir == "here"


# -- 8. install hints that can be followed; the demo installs what the README uses --------


def test_install_hints_name_the_checkout() -> None:
    plotting = typer.Typer()

    @plotting.command()
    @handle_errors
    def plot() -> None:
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    line = CliRunner().invoke(plotting, []).stderr.strip()
    assert "mpfn[" not in line and "warmer extra" in line, line
    assert re.search(r"-m pip install -e '.*\[warmer\]'", line), line


def test_the_demo_installs_the_extras_the_readme_uses() -> None:
    import tomllib

    demo = (REPO / "scripts" / "demo").read_text()
    extras = set(re.search(r"scripts/install (\S+)", demo).group(1).split(","))  # type: ignore[union-attr]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = " ".join(d for e in extras for d in project["optional-dependencies"][e])
    for package in ("onnxruntime", "matplotlib", "prophet"):
        assert package in wanted, (package, extras)
