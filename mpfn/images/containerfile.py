"""The Containerfile of one image. Pure: the same spec, base and labels give the same text.

No RUN step: both Python layers were installed on the host for the image's platform, so
a build only stacks files, needs no network and no emulation for another architecture.
The process runs as an unnamed non-root user (uid 10001) with HOME in /tmp.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mpfn.images.catalog import ImageSpec

UID = 10001
DEPS_DIR = "/opt/mpfn/deps"
APP_DIR = "/opt/mpfn/app"


def render(spec: ImageSpec, base: str, labels: Mapping[str, str]) -> str:
    env = {
        "PYTHONPATH": f"{APP_DIR}:{DEPS_DIR}",
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        **dict(spec.env),
    }
    lines = [
        f"FROM {base}",
        f"COPY deps/ {DEPS_DIR}/",
        f"COPY app/ {APP_DIR}/",
        "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in env.items()),
        "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())),
        "WORKDIR /tmp",
        f"USER {UID}:{UID}",
    ]
    if spec.port is not None:
        lines.append(f"EXPOSE {spec.port}")
    lines.append(f"ENTRYPOINT {json.dumps(list(spec.entrypoint))}")
    lines.append(f"CMD {json.dumps(list(spec.cmd))}")
    return "\n".join(lines) + "\n"
