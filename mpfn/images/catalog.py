"""The images `mpfn build` makes: what each holds and how it starts. Pure data.

Every image is the Debian base plus two layers built on the host: the third-party
packages (`deps`) and mpfn itself (`app`). Entry points use `python3 -m`, so an image
needs no console scripts; the default command makes it listen on all interfaces, as a
container must.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Clients of the object stores a part may read the state from (s3://, gs://).
STORES = ("boto3>=1.35", "google-cloud-storage>=2.16")
#: How AWS Lambda runs the warmer image (its ImageConfig): the runtime interface client
#: (`awslambdaric`, in the image) calling the warmer's Lambda handler, instead of the
#: image's own entry point (one run as a job).
WARMER_LAMBDA_ENTRYPOINT = ("python3", "-m", "awslambdaric")
WARMER_LAMBDA_COMMAND = ("mpfn.functions.warmer.lambda_handler.handler",)


@dataclass(frozen=True)
class ImageSpec:
    target: str
    name: str
    description: str
    extras: tuple[str, ...]
    requirements: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    port: int | None
    env: tuple[tuple[str, str], ...] = ()


def _adapter(kind: str) -> ImageSpec:
    return ImageSpec(
        target=f"adapter:{kind}",
        name=f"mpfn-adapter-{kind}",
        description=f"adapter server in front of a {kind} backend (pool protocol v2)",
        extras=(kind, "oci"),
        requirements=STORES,
        entrypoint=("python3", "-m", f"mpfn.adapters.{kind}"),
        cmd=("--host", "0.0.0.0", "--port", "8000", "--cache-dir", "/tmp/mpfn-cache"),
        port=8000,
    )


CATALOG: dict[str, ImageSpec] = {
    spec.target: spec
    for spec in (
        ImageSpec(
            target="router",
            name="mpfn-router",
            description="router function on uvicorn (Cloud Run, Kubernetes, any host)",
            extras=("aws",),
            requirements=STORES[1:],
            entrypoint=("python3", "-m", "mpfn.functions.router"),
            cmd=("--host", "0.0.0.0"),
            port=8080,
            env=(("PORT", "8080"),),
        ),
        ImageSpec(
            target="warmer",
            name="mpfn-warmer",
            description="warmer: one run as a job; the Lambda runtime client for AWS",
            extras=("warmer", "oci", "tfserving"),
            requirements=(*STORES, "awslambdaric>=2.0"),
            entrypoint=("python3", "-m", "mpfn.functions.warmer"),
            cmd=(),
            port=None,
            env=(("MPLCONFIGDIR", "/tmp/matplotlib"),),
        ),
        ImageSpec(
            target="worker",
            name="mpfn-worker",
            description="ONNX Runtime worker, CPU (pool protocol v2)",
            extras=("worker", "oci"),
            requirements=STORES,
            entrypoint=("python3", "-m", "mpfn.adapters.ort_worker"),
            cmd=("--host", "0.0.0.0", "--port", "8000", "--cache-dir", "/tmp/mpfn-cache"),
            port=8000,
        ),
        _adapter("tfserving"),
        _adapter("torchserve"),
    )
}
#: `mpfn build worker-cuda --base IMAGE`: the worker on a CUDA base with onnxruntime-gpu.
CUDA_WORKER = ImageSpec(
    target="worker-cuda",
    name="mpfn-worker-cuda",
    description="ONNX Runtime worker with the CUDA execution provider (needs --base)",
    extras=("oci",),
    requirements=(*STORES, "onnxruntime-gpu>=1.17", "onnx>=1.15"),
    entrypoint=("python3", "-m", "mpfn.adapters.ort_worker"),
    cmd=("--host", "0.0.0.0", "--port", "8000", "--cache-dir", "/tmp/mpfn-cache"),
    port=8000,
)
TARGETS = (*CATALOG, CUDA_WORKER.target)


class UnknownTarget(ValueError):
    """A build target that is not in the catalog."""


def resolve(targets: Iterable[str]) -> list[ImageSpec]:
    """Target names (`all`, `router`, `adapter:tfserving`, ...) -> specs, in catalog order,
    each once. `all` is every CPU image; `worker-cuda` must be asked for by name."""
    wanted: list[str] = []
    for target in targets:
        if target == "all":
            wanted.extend(CATALOG)
        elif target in CATALOG or target == CUDA_WORKER.target:
            wanted.append(target)
        else:
            raise UnknownTarget(f"unknown image {target!r}; choose from: all, {', '.join(TARGETS)}")
    order = [*CATALOG, CUDA_WORKER.target]
    return [CATALOG.get(t, CUDA_WORKER) for t in sorted(set(wanted), key=order.index)]
