"""Where the state lives and how to reach it: `--state` > `MPFN_STATE` > `mpfn.yaml` > `./.mpfn`.

`mpfn.yaml` (found in the working directory or a parent) may also carry store options:

    state: s3://my-bucket/mpfn
    s3: {endpoint_url: "http://127.0.0.1:9000", region: us-east-1}
    gcs: {project: my-project}

This module only resolves configuration; it never opens a connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "mpfn.yaml"
DEFAULT_STATE_DIR = ".mpfn"


class ConfigError(ValueError):
    """mpfn.yaml is unreadable or malformed."""


@dataclass(frozen=True)
class Config:
    state: str
    source: str  # which rule chose `state`: flag, env, file or default
    options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the mpfn.yaml that was read, if any

    @property
    def project_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def find_config_file(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def normalize_state_url(state: str, base: Path) -> str:
    """Turn a bare path into `file://ABSOLUTE`; leave `s3://`, `gs://`, `file://` as URLs."""
    if state.startswith(("s3://", "gs://")):
        return state
    if state.startswith("file://"):
        state = state[len("file://") :]
    elif "://" in state:
        raise ConfigError(f"{state}: unsupported state URL (use a path, file://, s3:// or gs://)")
    path = Path(state).expanduser()
    if not path.is_absolute():
        path = base / path
    return f"file://{path.resolve()}"


def load_config(state: str | None = None, *, cwd: Path | None = None) -> Config:
    cwd = (cwd or Path.cwd()).resolve()
    path = find_config_file(cwd)
    data = read_config_file(path) if path else {}
    base = path.parent if path else cwd
    if state:
        return Config(normalize_state_url(state, cwd), "flag", data, path)
    env = os.environ.get("MPFN_STATE")
    if env:
        return Config(normalize_state_url(env, cwd), "env", data, path)
    if path and data.get("state"):
        if not isinstance(data["state"], str):
            raise ConfigError(f"{path}: 'state' must be a string URL or path")
        return Config(normalize_state_url(data["state"], base), "file", data, path)
    return Config(normalize_state_url(DEFAULT_STATE_DIR, base), "default", data, path)
