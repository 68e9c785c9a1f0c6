"""TF Serving's model config list as the adapter last sent it, in JSON and on disk.

TF Serving replaces its whole config on every reload, so the adapter that sends it must
know the whole list; the file lets a restarted adapter know it too. The format is the
`model_config_list` option's: `[{"name", "base_path", "model_platform", "versions"}]`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mpfn.adapters.tfserving.reload import ModelConfigSpec

CONFIG_FILE = "tfserving-models.json"


def parse_configs(raw: Sequence[Mapping[str, Any]]) -> list[ModelConfigSpec]:
    """`model_config_list` entries -> specs; KeyError/ValueError/TypeError on bad entries."""
    return [
        ModelConfigSpec(
            name=str(item["name"]),
            base_path=str(item["base_path"]),
            platform=str(item.get("model_platform", "tensorflow")),
            versions=tuple(int(v) for v in item.get("versions", ())),
        )
        for item in raw
    ]


def dump_configs(specs: Sequence[ModelConfigSpec]) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "base_path": s.base_path,
            "model_platform": s.platform,
            "versions": list(s.versions),
        }
        for s in specs
    ]


def read_configs(path: Path) -> list[ModelConfigSpec] | None:
    """The kept list, or None when there is none yet; ValueError when it is unreadable
    (starting from nothing would drop every model at the next reload)."""
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, list):
            raise TypeError("not a JSON list")
        return parse_configs(raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: the kept TF Serving model config is unreadable ({exc}); "
            "fix it or remove it to start from the model_config_list option"
        ) from None


def write_configs(path: Path, specs: Sequence[ModelConfigSpec]) -> None:
    """Replace the kept list atomically (a crash leaves the old list or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w") as f:
        json.dump(dump_configs(specs), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
