"""The `gcp` target: state bucket, service accounts with narrow roles, router on Cloud Run,
warmer as a Cloud Run job triggered by Cloud Scheduler, each pool as a Cloud Run service.

Roles are granted on the project with IAM conditions that confine them to the state
prefix: the router may read objects under it (and list only that prefix) and create
objects under `usage/`; the warmer may read and write under the prefix. The warmer's
service account is the only invoker of the warmer job, and Cloud Scheduler runs the job
as that account. The router service is public (`allUsers` invoker) only when
`deploy.gcp.public` is set. With `deploy.gcp.vpc` the service and the job send traffic
into a VPC network (Direct VPC egress or a connector, see `gcp_vpc`), so they reach pools
on private addresses. Images come from the config (built separately).

Pools (`deploy.pools`, see `gcp_pools`) run as the pools' service account, which may
read objects under the prefix; their ingress is internal and only the router's and the
warmer's accounts hold the invoker role on them, so they are registered with
`google-id-token` auth (`placements`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from mpfn.deploy import gcp_pools, gcp_vpc
from mpfn.deploy.gcp_api import GcpApi, GcpSettings, sdk
from mpfn.deploy.gcp_resources import (
    GcsBucket,
    RoleGrant,
    RunJob,
    RunPoolService,
    RunService,
    SchedulerJob,
    ServiceAccount,
    state_conditions,
)
from mpfn.deploy.k8s_manifests import cron_every
from mpfn.deploy.models import Action, Change, Resource, ResourceKey
from mpfn.deploy.placement import PoolPlacement
from mpfn.deploy.planner import Planner, PlanOptions
from mpfn.deploy.record import RecordStore
from mpfn.deploy.spec import DeployConfig, DeployConfigError, require, require_cloud_settings
from mpfn.deploy.targets import Project
from mpfn.store import split_bucket_url

INVOKER = "roles/run.invoker"
RUN_HOST = "https://run.googleapis.com"


class GcpTarget:
    name = "gcp"

    def __init__(self, config: DeployConfig, project: Project, *, api: GcpApi | None = None):
        self.config = config
        self.project = project
        gcp = config.gcp
        require_cloud_settings(config, project.state, "gcp")
        self.project_id = require(gcp.project, "gcp.project", "gcp")
        self.region = require(gcp.region, "gcp.region", "gcp")
        self.router_image = require(config.router.image, "router.image", "gcp")
        url = gcp.state or project.state
        if not url.startswith("gs://"):
            raise DeployConfigError(
                f"--target gcp needs a gs:// state (got {url}); set deploy.gcp.state or state"
            )
        self.bucket, self.prefix = split_bucket_url(url)
        self.state_url = url.rstrip("/")
        self.settings = GcpSettings(
            project=self.project_id,
            region=self.region,
            run_endpoint=gcp.endpoints.run,
            scheduler_endpoint=gcp.endpoints.scheduler,
            storage_endpoint=gcp.endpoints.storage,
            iam_endpoint=gcp.endpoints.iam,
            resourcemanager_endpoint=gcp.endpoints.resourcemanager,
        )
        self.api = api or GcpApi(self.settings)
        stem = config.prefix()
        self.router, self.warmer = f"{stem}-router", f"{stem}-warmer"
        self.router_sa, self.warmer_sa = f"{stem[:21]}-router", f"{stem[:21]}-warmer"
        self.pools_sa = f"{stem[:21]}-pools"
        self.schedule = f"{stem}-warmer-schedule"
        self.pool_services = self._pool_resources()  # a bad pool fails before any call

    # -- desired --------------------------------------------------------------------------

    def _member(self, account_id: str) -> str:
        return f"serviceAccount:{self.api.service_account_email(account_id)}"

    def desired(self) -> Sequence[Resource]:
        read, usage = state_conditions(self.bucket, self.prefix)
        stem = self.config.prefix()
        env = tuple(sorted({**self.config.router.env, "MPFN_STATE": self.state_url}.items()))
        vpc = gcp_vpc.desired(self.config.gcp.vpc, self.project_id, self.region)
        resources: list[Resource] = [
            GcsBucket(self.bucket, location=self.region.lower()),
            ServiceAccount(self.router_sa, display_name=f"mpfn router ({stem})"),
            RoleGrant(
                f"{stem}-router-read",
                "roles/storage.objectViewer",
                self._member(self.router_sa),
                read,
            ),
            RoleGrant(
                f"{stem}-router-usage",
                role="roles/storage.objectCreator",
                member=self._member(self.router_sa),
                expression=usage,
            ),
            RunService(
                self.router,
                image=self.router_image,
                service_account=self.api.service_account_email(self.router_sa),
                memory_mb=self.config.router.memory_mb,
                timeout_s=self.config.router.timeout_s,
                min_instances=self.config.router.min_instances,
                max_instances=self.config.router.max_instances,
                environment=env,
                vpc=vpc,
                public=self.config.gcp.public,
            ),
        ]
        warmer = self.config.warmer
        if warmer.image:
            email = self.api.service_account_email(self.warmer_sa)
            resources += [
                ServiceAccount(self.warmer_sa, display_name=f"mpfn warmer ({stem})"),
                RoleGrant(
                    f"{stem}-warmer-state",
                    "roles/storage.objectUser",
                    self._member(self.warmer_sa),
                    read,
                ),
                RunJob(
                    self.warmer,
                    image=warmer.image,
                    service_account=email,
                    memory_mb=warmer.memory_mb,
                    timeout_s=warmer.timeout_s,
                    environment=self.config.warmer_environment(self.state_url),
                    vpc=vpc,
                    invoker=email,
                ),
                SchedulerJob(
                    self.schedule,
                    schedule=cron_every(warmer.every_minutes),
                    job=self.warmer,
                    service_account=email,
                ),
            ]
        return resources + self.pool_services

    def _pool_invokers(self) -> tuple[str, ...]:
        """The only members allowed to call a pool: the router's and the warmer's accounts."""
        accounts = [self.router_sa] + ([self.warmer_sa] if self.config.warmer.image else [])
        return tuple(sorted(self._member(a) for a in accounts))

    def _pool_resources(self) -> list[Resource]:
        if not self.config.pools:
            return []
        read, _ = state_conditions(self.bucket, self.prefix)
        vpc = gcp_vpc.desired(self.config.gcp.vpc, self.project_id, self.region)
        stem = self.config.prefix()
        email = self.api.service_account_email(self.pools_sa)
        resources: list[Resource] = [
            ServiceAccount(self.pools_sa, display_name=f"mpfn pools ({stem})"),
            RoleGrant(
                f"{stem}-pools-read",
                "roles/storage.objectViewer",
                self._member(self.pools_sa),
                read,
            ),
        ]
        invokers = self._pool_invokers()
        for pool in self.config.pools:
            resources.append(
                gcp_pools.desired(
                    self.config,
                    pool,
                    state=self.state_url,
                    service_account=email,
                    vpc=vpc,
                    invokers=invokers,
                )
            )
        return resources

    def placements(self) -> list[PoolPlacement]:
        """Where the router and the warmer reach each pool: its service's URL once the
        service exists (None before, e.g. on a dry run), with a Google ID token for it."""
        out = []
        for pool in self.config.pools:
            name = gcp_pools.service_name(self.config, pool)
            found = self._observe_pool(name)
            uri = found.url if found is not None and found.url else None
            auth: dict[str, Any] = {"type": "google-id-token"}
            if uri:
                auth["audience"] = uri
            service = f"{self.settings.parent}/services/{name}"
            scaler: dict[str, Any] = {"kind": "cloudrun", "service": service, "wake": False}
            if self.config.gcp.endpoints.run:
                scaler["api_url"] = self.config.gcp.endpoints.run
            out.append(PoolPlacement(pool, "gcp", self.region, uri, auth=auth, scaler=scaler))
        return out

    def resource_keys(self) -> list[ResourceKey]:
        return [r.key for r in self.desired()]

    def planner(self, options: PlanOptions) -> Planner:
        return Planner(options)

    def records(self) -> RecordStore | None:
        if self.api.get_bucket(self.bucket) is None:
            return None
        from mpfn.store.gcs import GCSStore

        def opener() -> GCSStore:
            return GCSStore(self.bucket, self.prefix, client=self.api.storage)

        return RecordStore(opener, self.name, self.config.record_stage())

    def notes(self) -> list[str]:
        notes = []
        if self.config.gcp.public:
            notes.append("the router service is public (allUsers): protect it with mpfn API keys")
        if not self.config.warmer.image:
            notes.append("no deploy.warmer.image: the warmer job and its schedule are skipped")
        vpc = self.config.gcp.vpc
        if self.config.pools and (vpc is None or vpc.egress != "all-traffic"):
            notes.append(
                "pool services accept internal traffic only: the router and warmer reach them "
                "with deploy.gcp.vpc egress all-traffic"
            )
        if self.config.gcp.vpc and self.config.gcp.vpc.egress == "all-traffic":
            notes.append(
                "all egress goes through the VPC: its subnetwork needs Private Google Access "
                "(or NAT) to reach the state bucket"
            )
        return notes

    def status(self) -> dict[str, Any]:
        return {"state": self.state_url, "project": self.project_id, "region": self.region}

    def logs(self, lines: int) -> list[str]:
        services = [self.router] + [
            gcp_pools.service_name(self.config, pool) for pool in self.config.pools
        ]
        return [
            f"gcloud run services logs read {service} --region {self.region} "
            f"--project {self.project_id} --limit {lines}"
            for service in services
        ]

    # -- observe --------------------------------------------------------------------------

    def observe(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Resource | None]:
        readers: dict[str, Callable[[str], Resource | None]] = {
            GcsBucket.kind: self._observe_bucket,
            ServiceAccount.kind: self._observe_account,
            RoleGrant.kind: self._observe_grant,
            RunService.kind: self._observe_service,
            RunJob.kind: self._observe_job,
            RunPoolService.kind: self._observe_pool,
            SchedulerJob.kind: self._observe_schedule,
        }
        self._policy: dict[str, Any] | None = None
        return {(kind, name): readers[kind](name) for kind, name in keys if kind in readers}

    def _observe_bucket(self, name: str) -> GcsBucket | None:
        bucket = self.api.get_bucket(name)
        if bucket is None:
            return None
        records = f"{self.prefix}/deploy/" if self.prefix else "deploy/"
        foreign = [k for k in self.api.list_objects(name, 100) if not k.startswith(records)]
        return GcsBucket(name, location=str(bucket.location).lower(), foreign_objects=len(foreign))

    def _observe_account(self, name: str) -> ServiceAccount | None:
        found = self.api.get_service_account(name)
        if found is None:
            return None
        return ServiceAccount(name, display_name=str(found.get("displayName", "")))

    def _observe_grant(self, name: str) -> RoleGrant | None:
        if self._policy is None:
            self._policy = self.api.get_project_policy()
        for binding in self._policy.get("bindings", []):
            condition = binding.get("condition") or {}
            if condition.get("title") == name and binding.get("members"):
                return RoleGrant(
                    name,
                    role=binding["role"],
                    member=binding["members"][0],
                    expression=condition.get("expression", ""),
                )
        return None

    def _service_name(self, kind: str, name: str) -> str:
        return f"{self.settings.parent}/{kind}/{name}"

    @staticmethod
    def _memory(container: Any) -> int:
        text = str(dict(container.resources.limits).get("memory", "0Mi"))
        match = re.match(r"^(\d+)(Mi|Gi)$", text)
        if not match:
            return 0
        return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)

    @staticmethod
    def _env(container: Any) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((e.name, e.value) for e in container.env))

    def _invokers(self, client: Any, resource: str) -> list[str]:
        policy = self.api.call(
            f"get IAM policy of {resource}",
            lambda: client.get_iam_policy(request={"resource": resource}),
        )
        return [m for b in policy.bindings if b.role == INVOKER for m in b.members]

    def _observe_service(self, name: str) -> RunService | None:
        full = self._service_name("services", name)
        svc = self.api.find(f"get service {name}", lambda: self.api.services.get_service(name=full))
        if svc is None:
            return None
        template = svc.template
        container = template.containers[0]
        return RunService(
            name,
            image=container.image,
            service_account=template.service_account,
            memory_mb=self._memory(container),
            timeout_s=int(template.timeout.total_seconds()) if template.timeout else 0,
            min_instances=template.scaling.min_instance_count,
            max_instances=template.scaling.max_instance_count,
            environment=self._env(container),
            vpc=gcp_vpc.observed(template.vpc_access),
            public="allUsers" in self._invokers(self.api.services, full),
            url=svc.uri,
        )

    def _observe_pool(self, name: str) -> RunPoolService | None:
        full = self._service_name("services", name)
        svc = self.api.find(f"get service {name}", lambda: self.api.services.get_service(name=full))
        if svc is None:
            return None
        invokers = tuple(sorted(self._invokers(self.api.services, full)))
        vpc = gcp_vpc.observed(svc.template.vpc_access)
        return gcp_pools.observed(name, svc, vpc, invokers)

    def _observe_job(self, name: str) -> RunJob | None:
        full = self._service_name("jobs", name)
        job = self.api.find(f"get job {name}", lambda: self.api.jobs.get_job(name=full))
        if job is None:
            return None
        task = job.template.template
        container = task.containers[0]
        invokers = self._invokers(self.api.jobs, full)
        return RunJob(
            name,
            image=container.image,
            service_account=task.service_account,
            memory_mb=self._memory(container),
            timeout_s=int(task.timeout.total_seconds()) if task.timeout else 0,
            environment=self._env(container),
            vpc=gcp_vpc.observed(task.vpc_access),
            invoker=invokers[0].removeprefix("serviceAccount:") if invokers else "",
        )

    def _observe_schedule(self, name: str) -> SchedulerJob | None:
        full = self._service_name("jobs", name)
        job = self.api.find(
            f"get scheduler job {name}", lambda: self.api.scheduler.get_job(name=full)
        )
        if job is None:
            return None
        uri = job.http_target.uri
        return SchedulerJob(
            name,
            schedule=job.schedule,
            job=uri.rsplit("/jobs/", 1)[-1].removesuffix(":run"),
            service_account=job.http_target.oauth_token.service_account_email,
        )

    # -- apply ----------------------------------------------------------------------------

    def apply(self, change: Change) -> dict[str, str]:
        method = getattr(self, f"_{change.action.value}_{type(change.resource).__name__}")
        result: dict[str, str] | None = method(change)
        return result or {}

    def _create_GcsBucket(self, change: Change) -> None:
        bucket = change.desired
        assert isinstance(bucket, GcsBucket)
        self.api.create_bucket(bucket.name, bucket.location)

    def _delete_GcsBucket(self, change: Change) -> None:
        self.api.delete_bucket(change.name)

    def _create_ServiceAccount(self, change: Change) -> None:
        account = change.desired
        assert isinstance(account, ServiceAccount)
        self.api.create_service_account(account.name, account.display_name)

    def _update_ServiceAccount(self, change: Change) -> None:
        """Only the display name can differ; it is informational, so it is left alone."""

    def _delete_ServiceAccount(self, change: Change) -> None:
        self.api.delete_service_account(change.name)

    def _edit_policy(self, title: str, grant: RoleGrant | None) -> None:
        policy = self.api.get_project_policy()
        bindings = [
            b
            for b in policy.get("bindings", [])
            if (b.get("condition") or {}).get("title") != title
        ]
        if grant is not None:
            bindings.append(
                {
                    "role": grant.role,
                    "members": [grant.member],
                    "condition": {"title": title, "expression": grant.expression},
                }
            )
        self.api.set_project_policy({**policy, "bindings": bindings})

    def _create_RoleGrant(self, change: Change) -> None:
        grant = change.desired
        assert isinstance(grant, RoleGrant)
        self._edit_policy(grant.name, grant)

    _update_RoleGrant = _create_RoleGrant

    def _delete_RoleGrant(self, change: Change) -> None:
        self._edit_policy(change.name, None)

    def _container(self, image: str, memory_mb: int, env: tuple[tuple[str, str], ...]) -> Any:
        run_v2 = sdk("google.cloud.run_v2")

        return run_v2.Container(
            image=image,
            env=[run_v2.EnvVar(name=k, value=v) for k, v in env],
            resources=run_v2.ResourceRequirements(limits={"memory": f"{memory_mb}Mi"}),
        )

    def _set_invokers(self, client: Any, resource: str, members: list[str]) -> None:
        policy_pb2 = sdk("google.iam.v1.policy_pb2")

        def run() -> Any:
            current = client.get_iam_policy(request={"resource": resource})
            bindings = [b for b in current.bindings if b.role != INVOKER]
            if members:
                bindings.append(policy_pb2.Binding(role=INVOKER, members=members))
            policy = policy_pb2.Policy(bindings=bindings, etag=current.etag)
            return client.set_iam_policy(request={"resource": resource, "policy": policy})

        self.api.call(f"set IAM policy of {resource}", run)

    def _service(self, svc: RunService) -> Any:
        run_v2 = sdk("google.cloud.run_v2")

        return run_v2.Service(
            ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
            template=run_v2.RevisionTemplate(
                containers=[self._container(svc.image, svc.memory_mb, svc.environment)],
                service_account=svc.service_account,
                timeout=f"{svc.timeout_s}s",
                scaling=run_v2.RevisionScaling(
                    min_instance_count=svc.min_instances, max_instance_count=svc.max_instances
                ),
                vpc_access=gcp_vpc.message(svc.vpc),
            ),
        )

    def _put_service(self, change: Change, name: str, body: Any) -> Any:
        """Create the Cloud Run service `name` from `body`, or replace it (an update);
        the finished operation's result (the service)."""
        if change.action is Action.CREATE:
            return self.api.call(
                f"create service {name}",
                lambda: self.api.services.create_service(
                    parent=self.settings.parent, service=body, service_id=name
                ).result(timeout=600),
            )
        body.name = self._service_name("services", name)
        return self.api.call(
            f"update service {name}",
            lambda: self.api.services.update_service(service=body).result(timeout=600),
        )

    def _create_RunService(self, change: Change) -> dict[str, str]:
        svc = change.desired
        assert isinstance(svc, RunService)
        full = self._service_name("services", svc.name)
        done = self._put_service(change, svc.name, self._service(svc))
        self._set_invokers(self.api.services, full, ["allUsers"] if svc.public else [])
        return {"router_url": str(done.uri)}

    _update_RunService = _create_RunService

    def _delete_RunService(self, change: Change) -> None:
        full = self._service_name("services", change.name)
        self.api.call(
            f"delete service {change.name}",
            lambda: self.api.services.delete_service(name=full).result(timeout=600),
        )

    def _create_RunPoolService(self, change: Change) -> None:
        svc = change.desired
        assert isinstance(svc, RunPoolService)
        full = self._service_name("services", svc.name)
        body = gcp_pools.service_message(svc, gcp_vpc.message(svc.vpc))
        self._put_service(change, svc.name, body)
        self._set_invokers(self.api.services, full, list(svc.invokers))

    _update_RunPoolService = _create_RunPoolService
    _delete_RunPoolService = _delete_RunService

    def _create_RunJob(self, change: Change) -> None:
        run_v2 = sdk("google.cloud.run_v2")

        job = change.desired
        assert isinstance(job, RunJob)
        body = run_v2.Job(
            template=run_v2.ExecutionTemplate(
                template=run_v2.TaskTemplate(
                    containers=[self._container(job.image, job.memory_mb, job.environment)],
                    service_account=job.service_account,
                    timeout=f"{job.timeout_s}s",
                    max_retries=0,
                    vpc_access=gcp_vpc.message(job.vpc),
                )
            )
        )
        full = self._service_name("jobs", job.name)
        if change.action is Action.CREATE:
            self.api.call(
                f"create job {job.name}",
                lambda: self.api.jobs.create_job(
                    parent=self.settings.parent, job=body, job_id=job.name
                ).result(timeout=600),
            )
        else:
            body.name = full
            self.api.call(
                f"update job {job.name}",
                lambda: self.api.jobs.update_job(job=body).result(timeout=600),
            )
        self._set_invokers(self.api.jobs, full, [f"serviceAccount:{job.invoker}"])

    _update_RunJob = _create_RunJob

    def _delete_RunJob(self, change: Change) -> None:
        full = self._service_name("jobs", change.name)
        self.api.call(
            f"delete job {change.name}",
            lambda: self.api.jobs.delete_job(name=full).result(timeout=600),
        )

    def _create_SchedulerJob(self, change: Change) -> None:
        scheduler_v1 = sdk("google.cloud.scheduler_v1")

        sched = change.desired
        assert isinstance(sched, SchedulerJob)
        job_uri = f"{RUN_HOST}/v2/{self._service_name('jobs', sched.job)}:run"
        body = scheduler_v1.Job(
            name=self._service_name("jobs", sched.name),
            schedule=sched.schedule,
            time_zone="Etc/UTC",
            http_target=scheduler_v1.HttpTarget(
                uri=job_uri,
                http_method=scheduler_v1.HttpMethod.POST,
                oauth_token=scheduler_v1.OAuthToken(service_account_email=sched.service_account),
            ),
        )
        if change.action is Action.CREATE:
            self.api.call(
                f"create scheduler job {sched.name}",
                lambda: self.api.scheduler.create_job(parent=self.settings.parent, job=body),
            )
        else:
            self.api.call(
                f"update scheduler job {sched.name}",
                lambda: self.api.scheduler.update_job(job=body),
            )

    _update_SchedulerJob = _create_SchedulerJob

    def _delete_SchedulerJob(self, change: Change) -> None:
        full = self._service_name("jobs", change.name)
        self.api.call(
            f"delete scheduler job {change.name}",
            lambda: self.api.scheduler.delete_job(name=full),
        )
