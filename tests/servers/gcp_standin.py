"""A stand-in for the Cloud Run v2, Cloud Scheduler v1 and IAM v1 REST APIs, on loopback.

Usage: python -m tests.servers.gcp_standin PORT (or `gcp_standin_server` here)

No emulator exists for these APIs, so this small real HTTP server keeps their resources in
memory with the REST shapes the official client libraries send and parse: Cloud Run
services and jobs (create/get/patch/delete as long-running operations that are already
done, getIamPolicy/setIamPolicy), Cloud Scheduler jobs (create/get/patch/delete) and IAM
service accounts (create/get/delete) and Resource Manager project IAM policies
(get/set with etags). Unknown names answer 404, duplicates 409, in the
Google error format. `GET /_dump` returns everything it holds.

Services are checked as Cloud Run v2 checks a revision template, and answer 400
(INVALID_ARGUMENT) otherwise: several containers are named uniquely and exactly one (the
ingress container) has a port; `dependsOn` names another container; reserved environment
variables (PORT, K_SERVICE, ...) are refused; limits hold only cpu, memory and
`nvidia.com/gpu` (1, on one container, exactly when `nodeSelector.accelerator` names a
known accelerator, with at least 4 CPUs and 16Gi); scaling bounds are ordered. A service
reads back with Cloud Run's output fields: `uri`, `urls`, `ingress` defaulted to
INGRESS_TRAFFIC_ALL, `generation`, `observedGeneration` and a ready `terminalCondition`.
It is a stand-in: it runs nothing and checks no image, quota, region or permission.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, ROOT, Proc, start, stopping

RUN_PATH = re.compile(
    r"^/v2/(projects/[^/]+/locations/[^/]+)/(services|jobs)(?:/([^/:]+))?(?::(\w+))?$"
)
OPERATION = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/operations/[^/]+)$")
SCHEDULER = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/jobs(?:/([^/:]+))?$")
IAM = re.compile(r"^/v1/projects/([^/]+)/serviceAccounts(?:/([^/:]+))?$")
PROJECT_POLICY = re.compile(r"^/v1/projects/([^/:]+):(getIamPolicy|setIamPolicy)$")
TYPES = {"services": "Service", "jobs": "Job"}
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
LIMIT_KEYS = frozenset({"cpu", "memory", "nvidia.com/gpu"})
ACCELERATORS = frozenset({"nvidia-l4", "nvidia-rtx-pro-6000"})
MEMORY = re.compile(r"^(\d+)(Mi|Gi)$")

LOCK = threading.Lock()
RUN: dict[str, dict[str, Any]] = {}  # full resource name -> resource, per API
SCHEDULER_JOBS: dict[str, dict[str, Any]] = {}
ACCOUNTS: dict[str, dict[str, Any]] = {}
POLICIES: dict[str, dict[str, Any]] = {}
OPERATIONS: dict[str, dict[str, Any]] = {}


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def not_found(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Resource '{name}' was not found")


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def _mib(text: str) -> int:
    match = MEMORY.match(text)
    if not match:
        raise invalid(f"memory limit {text!r} is not a valid quantity")
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def _cpus(text: str) -> float:
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def check_service(body: dict[str, Any]) -> None:
    """Refuse what Cloud Run v2 refuses in a service's revision template."""
    template = body.get("template") or {}
    containers = template.get("containers") or []
    if not containers:
        raise invalid("template.containers: a revision needs at least one container")
    names = [c.get("name", "") for c in containers]
    if len(containers) > 1:
        if not all(names) or len(set(names)) != len(names):
            raise invalid("template.containers: with several containers each has a unique name")
        if sum(1 for c in containers if c.get("ports")) != 1:
            raise invalid("template.containers: exactly one container must specify a port")
    gpu_containers = []
    for container in containers:
        if len(container.get("ports") or []) > 1:
            raise invalid(f"container {container.get('name')}: only a single port")
        for env in container.get("env") or []:
            if env.get("name") in RESERVED_ENV:
                raise invalid(f"env {env['name']} is reserved")
        for dep in container.get("dependsOn") or []:
            if dep not in names or dep == container.get("name"):
                raise invalid(f"dependsOn {dep!r} names no other container")
        limits = (container.get("resources") or {}).get("limits") or {}
        unknown = set(limits) - LIMIT_KEYS
        if unknown:
            raise invalid(f"resources.limits: unsupported {', '.join(sorted(unknown))}")
        if "nvidia.com/gpu" in limits:
            if limits["nvidia.com/gpu"] != "1":
                raise invalid("nvidia.com/gpu: the only supported value is 1")
            if _cpus(limits.get("cpu", "1")) < 4 or _mib(limits.get("memory", "512Mi")) < 16384:
                raise invalid("a GPU needs at least 4 CPUs and 16Gi of memory")
            gpu_containers.append(container)
    accelerator = (template.get("nodeSelector") or {}).get("accelerator")
    if accelerator is not None and accelerator not in ACCELERATORS:
        raise invalid(f"nodeSelector.accelerator {accelerator!r} is not supported")
    if len(gpu_containers) > 1 or bool(accelerator) != bool(gpu_containers):
        raise invalid("a GPU needs nodeSelector.accelerator and one container with it")
    scaling = template.get("scaling") or {}
    low, high = scaling.get("minInstanceCount", 0), scaling.get("maxInstanceCount")
    if high is not None and int(low) > int(high):
        raise invalid("scaling: minInstanceCount exceeds maxInstanceCount")


def serving(name: str, rid: str, resource: dict[str, Any], uri: str) -> dict[str, Any]:
    """A service as Cloud Run reads it back: defaults and output fields filled in."""
    generation = resource["generation"]
    return {
        "ingress": "INGRESS_TRAFFIC_ALL",
        **resource,
        "uri": uri,
        "urls": [uri],
        "observedGeneration": generation,
        "latestReadyRevision": f"{name}/revisions/{rid}-{int(generation):05d}",
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
    }


def done_operation(parent: str, kind: str, resource: dict[str, Any]) -> dict[str, Any]:
    name = f"{parent}/operations/{uuid.uuid4()}"
    op = {
        "name": name,
        "done": True,
        "response": {"@type": f"type.googleapis.com/google.cloud.run.v2.{TYPES[kind]}", **resource},
    }
    OPERATIONS[name] = op
    return op


def run_api(method: str, match: re.Match[str], query: dict[str, list[str]], body: Any) -> Any:
    parent, kind, rid, verb = match.groups()
    if rid is None:
        if method == "GET":
            items = [v for k, v in RUN.items() if k.startswith(f"{parent}/{kind}/")]
            return {kind: items}
        rid = query.get("serviceId" if kind == "services" else "jobId", [""])[0]
        name = f"{parent}/{kind}/{rid}"
        if name in RUN:
            raise ApiError(409, "ALREADY_EXISTS", f"Resource '{name}' already exists")
        resource = {**body, "name": name, "uid": str(uuid.uuid4()), "generation": "1"}
        if kind == "services":
            check_service(body)
            uri = f"https://{rid}-{uuid.uuid4().hex[:10]}-uc.a.run.app"
            resource = serving(name, rid, resource, uri)
        RUN[name] = resource
        return done_operation(parent, kind, resource)
    name = f"{parent}/{kind}/{rid}"
    if name not in RUN:
        raise not_found(name)
    if verb == "getIamPolicy":
        return POLICIES.get(name, {"etag": "ACAB"})
    if verb == "setIamPolicy":
        POLICIES[name] = {**body["policy"], "etag": uuid.uuid4().hex[:8]}
        return POLICIES[name]
    if verb is not None:
        raise ApiError(400, "INVALID_ARGUMENT", f"unsupported method {verb}")
    if method == "GET":
        return RUN[name]
    if method == "PATCH":
        old = RUN[name]
        new = {
            **body,
            "name": name,
            "uid": old["uid"],
            "generation": str(int(old["generation"]) + 1),
        }
        if kind == "services":
            check_service(body)
            new = serving(name, rid, new, old["uri"])
        RUN[name] = new
        return done_operation(parent, kind, RUN[name])
    if method == "DELETE":
        POLICIES.pop(name, None)
        return done_operation(parent, kind, RUN.pop(name))
    raise ApiError(405, "UNIMPLEMENTED", method)


def scheduler_api(method: str, match: re.Match[str], body: Any) -> Any:
    parent, rid = match.groups()
    if rid is None:
        if method == "GET":
            return {
                "jobs": [v for k, v in SCHEDULER_JOBS.items() if k.startswith(f"{parent}/jobs/")]
            }
        name = body["name"]
        if name in SCHEDULER_JOBS:
            raise ApiError(409, "ALREADY_EXISTS", f"Job '{name}' already exists")
        SCHEDULER_JOBS[name] = {**body, "state": "ENABLED"}
        return SCHEDULER_JOBS[name]
    name = f"{parent}/jobs/{rid}"
    if name not in SCHEDULER_JOBS:
        raise not_found(name)
    if method == "GET":
        return SCHEDULER_JOBS[name]
    if method == "PATCH":
        SCHEDULER_JOBS[name] = {**SCHEDULER_JOBS[name], **body, "name": name}
        return SCHEDULER_JOBS[name]
    if method == "DELETE":
        del SCHEDULER_JOBS[name]
        return {}
    raise ApiError(405, "UNIMPLEMENTED", method)


def iam_api(method: str, match: re.Match[str], body: Any) -> Any:
    project, email = match.groups()
    if email is None:
        account = body["accountId"]
        email = f"{account}@{project}.iam.gserviceaccount.com"
        name = f"projects/{project}/serviceAccounts/{email}"
        if name in ACCOUNTS:
            raise ApiError(409, "ALREADY_EXISTS", f"Service account {email} already exists")
        ACCOUNTS[name] = {
            "name": name,
            "projectId": project,
            "uniqueId": str(uuid.uuid4().int)[:21],
            "email": email,
            "displayName": body.get("serviceAccount", {}).get("displayName", ""),
            "description": body.get("serviceAccount", {}).get("description", ""),
        }
        return ACCOUNTS[name]
    name = f"projects/{project}/serviceAccounts/{email}"
    if name not in ACCOUNTS:
        raise not_found(name)
    if method == "GET":
        return ACCOUNTS[name]
    if method == "DELETE":
        del ACCOUNTS[name]
        return {}
    raise ApiError(405, "UNIMPLEMENTED", method)


def project_policy(match: re.Match[str], body: Any) -> Any:
    key = f"projects/{match.group(1)}"
    current = POLICIES.get(key, {"version": 1, "etag": "BwYA", "bindings": []})
    if match.group(2) == "getIamPolicy":
        return current
    policy = body["policy"]
    if policy.get("etag") and policy["etag"] != current["etag"]:
        raise ApiError(409, "ABORTED", "There were concurrent policy changes")
    POLICIES[key] = {**policy, "etag": uuid.uuid4().hex[:8]}
    return POLICIES[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        query = parse_qs(url.query)
        method = self.command
        try:
            with LOCK:
                if url.path == "/_dump":
                    result: Any = {
                        "run": RUN,
                        "scheduler": SCHEDULER_JOBS,
                        "accounts": ACCOUNTS,
                        "policies": POLICIES,
                    }
                elif m := OPERATION.match(url.path):
                    if m.group(1) not in OPERATIONS:
                        raise not_found(m.group(1))
                    result = OPERATIONS[m.group(1)]
                elif m := RUN_PATH.match(url.path):
                    result = run_api(method, m, query, body)
                elif m := SCHEDULER.match(url.path):
                    result = scheduler_api(method, m, body)
                elif m := PROJECT_POLICY.match(url.path):
                    result = project_policy(m, body)
                elif m := IAM.match(url.path):
                    result = iam_api(method, m, body)
                else:
                    raise ApiError(404, "NOT_FOUND", f"no such API: {method} {url.path}")
        except ApiError as exc:
            error = {"code": exc.code, "message": exc.message, "status": exc.status}
            self._send(exc.code, {"error": error})
            return
        self._send(200, result)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def gcp_standin_server(log_dir: Path) -> Iterator[Proc]:
    def launch(ports: list[int]) -> Proc:
        argv = [PYTHON, "-m", "tests.servers.gcp_standin", str(ports[0])]
        return start(argv, port=ports[0], log_dir=log_dir, name="gcp-standin", cwd=ROOT,
                     ready_url=f"http://127.0.0.1:{ports[0]}/_dump")  # fmt: skip

    with stopping(start_on_free_ports(1, launch)) as proc:
        yield proc


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
