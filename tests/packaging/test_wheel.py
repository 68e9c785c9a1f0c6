"""The built wheel is self-contained: a working `mpfn` from any directory, and no generic
top-level names (`functions`, `adapters`, `templates`) in site-packages."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_layout_and_cli(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("mpfn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {
        "mpfn",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }, top
    for expected in (
        "mpfn/functions/router/__init__.py",
        "mpfn/adapters/ort_worker/__init__.py",
        "mpfn/templates/mpfn.yaml",
        "mpfn/templates/policy.yaml",
        "mpfn/cli/main.py",
        "mpfn/py.typed",
    ):
        assert expected in names, expected
    # Every package in the source tree made it into the wheel.
    mapping = {
        "mpfn": "mpfn",
        "functions": "mpfn/functions",
        "adapters": "mpfn/adapters",
        "templates": "mpfn/templates",
    }
    for src, dest in mapping.items():
        for init_py in (ROOT / src).rglob("__init__.py"):
            rel = init_py.relative_to(ROOT / src).as_posix()
            assert f"{dest}/{rel}" in names, f"package {init_py.parent} missing from the wheel"

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("MPFN_STATE", None)
    where = subprocess.run(
        [sys.executable, "-c", "import mpfn.adapters.ort_worker as w; print(w.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(target))
    init = subprocess.run(
        [str(target / "bin" / "mpfn"), "init"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    assert (elsewhere / "mpfn.yaml").is_file()
    assert (elsewhere / ".mpfn").is_dir()
