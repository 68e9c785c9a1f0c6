"""The `aws` target: desired resources from the config, observation and apply via `AwsApi`.

The router runs as a zip Lambda built from this project (see `packaging`) behind a
Function URL; the warmer runs as a container-image Lambda whose image URI comes from the
config (`deploy.warmer.image`, `mpfn build warmer` pushed to ECR), invoked by EventBridge
Scheduler; its ImageConfig runs the image's Lambda runtime interface client on the
warmer's handler (compared on every deploy, like the rest of the configuration). The state
bucket and prefix come from `deploy.aws.state` or the top-level `state:`. Without a warmer
image the warmer, its role and its schedule are left out. With `deploy.aws.vpc` both
functions attach to its subnets and security groups (so they reach pools on private
addresses) and their roles may manage the network interfaces that takes; removing the
section detaches them.

`deploy.pools` run as ECS services (see `aws_pools` for the shape, `aws_ecs` for how they
are observed and applied): a cluster `<prefix>`, Fargate tasks for CPU pools, an EC2 GPU
capacity provider for nvidia pools, and a Cloud Map name per pool in the private DNS
namespace `<prefix>.mpfn.internal` of `deploy.aws.vpc`. `placements` says where each pool
is reached, from the config alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from mpfn.deploy import packaging
from mpfn.deploy.aws_api import AwsApi, AwsSettings
from mpfn.deploy.aws_ecs import EcsPools
from mpfn.deploy.aws_pools import EcsNames, check_pools, placements
from mpfn.deploy.aws_resources import (
    POLICY_NAME,
    FunctionUrl,
    IamRole,
    ImageFunction,
    LogGroup,
    S3Bucket,
    Schedule,
    Scope,
    Vpc,
    ZipFunction,
    canonical,
    rate,
    router_policy,
    scheduler_policy,
    trust,
    warmer_policy,
)
from mpfn.deploy.models import Action, Change, Resource, ResourceKey
from mpfn.deploy.placement import PoolPlacement
from mpfn.deploy.planner import Planner, PlanOptions
from mpfn.deploy.record import RecordStore
from mpfn.deploy.spec import DeployConfig, DeployConfigError, require, require_cloud_settings
from mpfn.deploy.targets import Project
from mpfn.images.catalog import WARMER_LAMBDA_COMMAND, WARMER_LAMBDA_ENTRYPOINT
from mpfn.store import split_bucket_url

BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
RECORDS_DIR = "deploy/"


def state_location(config: DeployConfig, project: Project) -> tuple[str, str]:
    """(bucket, prefix) of the S3 state the deployment creates and points at."""
    import re

    url = config.aws.state or project.state
    if not url.startswith("s3://"):
        raise DeployConfigError(
            f"--target aws needs an s3:// state (got {url}); set deploy.aws.state or state"
        )
    bucket, prefix = split_bucket_url(url)
    if not re.match(BUCKET_NAME, bucket) or ".." in bucket:
        raise DeployConfigError(f"{url}: {bucket!r} is not a valid S3 bucket name")
    return bucket, prefix


class AwsTarget(EcsPools):
    name = "aws"

    def __init__(
        self,
        config: DeployConfig,
        project: Project,
        *,
        api: AwsApi | None = None,
        build: Callable[[Path], packaging.RouterPackage] | None = None,
    ) -> None:
        self.config = config
        self.project = project
        require_cloud_settings(config, project.state, "aws")
        self.region = require(config.aws.region, "aws.region", "aws")
        self.bucket, self.prefix = state_location(config, project)
        self.settings = AwsSettings(
            region=self.region,
            endpoint_url=config.aws.endpoint_url,
            profile=config.aws.profile,
            access_key_id=config.aws.access_key_id,
            secret_access_key=config.aws.secret_access_key,
        )
        self.api = api or AwsApi(self.settings)
        self._build = build or partial(packaging.build, architecture=config.router.architecture)
        self.package: packaging.RouterPackage | None = None
        stem = config.prefix()
        self.router = f"{stem}-router"
        self.warmer = f"{stem}-warmer"
        self.router_role = f"{stem}-router-role"
        self.warmer_role = f"{stem}-warmer-role"
        self.scheduler_role = f"{stem}-scheduler-role"
        self.schedule = f"{stem}-warmer-schedule"
        self.vpc = Vpc.configured(config.aws.vpc)
        self.ecs = EcsNames(stem)
        self.pool_images = check_pools(config)

    @property
    def state_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    # -- desired --------------------------------------------------------------------------

    def resource_keys(self) -> list[ResourceKey]:
        keys = [
            (S3Bucket.kind, self.bucket),
            (IamRole.kind, self.router_role),
            (LogGroup.kind, f"/aws/lambda/{self.router}"),
            (ZipFunction.kind, self.router),
            (FunctionUrl.kind, self.router),
        ]
        if self.config.warmer.image:
            keys += [
                (IamRole.kind, self.warmer_role),
                (IamRole.kind, self.scheduler_role),
                (LogGroup.kind, f"/aws/lambda/{self.warmer}"),
                (ImageFunction.kind, self.warmer),
                (Schedule.kind, self.schedule),
            ]
        return keys + self.pool_keys()

    def environment(self) -> tuple[tuple[str, str], ...]:
        env = {**self.config.router.env, "MPFN_STATE": self.state_url}
        return tuple(sorted(env.items()))

    def desired(self) -> Sequence[Resource]:
        if self.package is None:
            self.package = self._build(self.project.directory / self.config.build_dir)
        scope = Scope(self.bucket, self.prefix, self.region, self.api.account)
        retention = self.config.aws.log_retention_days
        router = self.config.router
        resources: list[Resource] = [
            S3Bucket(self.bucket, region=self.region),
            IamRole(
                self.router_role,
                trust=trust("lambda.amazonaws.com"),
                policy=router_policy(scope, self.router, self.vpc, self.scaled_services()),
            ),
            LogGroup(f"/aws/lambda/{self.router}", retention_days=retention),
            ZipFunction(
                self.router,
                role=self.router_role,
                handler=packaging.HANDLER,
                runtime=self.package.runtime,
                architecture=self.package.architecture,
                memory_mb=router.memory_mb,
                timeout_s=router.timeout_s,
                environment=self.environment(),
                subnet_ids=self.vpc.subnet_ids,
                security_group_ids=self.vpc.security_group_ids,
                code_sha256=self.package.code_sha256,
                code_path=str(self.package.path),
            ),
            FunctionUrl(self.router, auth=self.config.aws.auth),
        ]
        warmer = self.config.warmer
        if warmer.image:
            resources += [
                IamRole(
                    self.warmer_role,
                    trust=trust("lambda.amazonaws.com"),
                    policy=warmer_policy(scope, self.warmer, self.vpc, self.scaled_services()),
                ),
                IamRole(
                    self.scheduler_role,
                    trust=trust("scheduler.amazonaws.com", self.api.account),
                    policy=scheduler_policy(self.api.function_arn(self.warmer)),
                ),
                LogGroup(f"/aws/lambda/{self.warmer}", retention_days=retention),
                ImageFunction(
                    self.warmer,
                    role=self.warmer_role,
                    image_uri=warmer.image,
                    entry_point=WARMER_LAMBDA_ENTRYPOINT,
                    command=WARMER_LAMBDA_COMMAND,
                    memory_mb=warmer.memory_mb,
                    timeout_s=warmer.timeout_s,
                    environment=self.config.warmer_environment(self.state_url),
                    subnet_ids=self.vpc.subnet_ids,
                    security_group_ids=self.vpc.security_group_ids,
                ),
                Schedule(
                    self.schedule,
                    function=self.warmer,
                    role=self.scheduler_role,
                    expression=rate(warmer.every_minutes),
                ),
            ]
        return resources + self.pool_resources(scope, self.state_url)

    def scaled_services(self) -> list[str]:
        """The ARNs of the ECS services of pools with max_replicas (sized by the warmer,
        woken by the router)."""
        cluster = self.config.prefix()
        return [
            f"arn:aws:ecs:{self.region}:{self.api.account}:service/{cluster}/{p.id}"
            for p in self.config.pools
            if p.max_replicas is not None
        ]

    def placements(self) -> list[PoolPlacement]:
        """Where each pool of the config is reached (its Cloud Map name); no I/O."""
        return placements(self.config, self.region)

    def planner(self, options: PlanOptions) -> Planner:
        return Planner(options)

    def notes(self) -> list[str]:
        notes = [self.package.describe()] if self.package else []
        if self.config.aws.auth == "NONE":
            notes.append(
                "the router URL is public (auth NONE): protect it with mpfn API keys "
                "or use auth AWS_IAM"
            )
        if not self.config.warmer.image:
            notes.append("no deploy.warmer.image: the warmer Lambda and its schedule are skipped")
        if self.vpc:
            notes.append(
                f"the functions run in subnets {', '.join(self.vpc.subnet_ids)}: pools must "
                "admit their security groups, and the subnets need a route to S3 (a gateway "
                "endpoint or NAT) for the state"
            )
        return notes + self.pool_notes()

    def status(self) -> dict[str, Any]:
        return {"state": self.state_url, "region": self.region}

    def logs(self, lines: int) -> list[str]:
        names = [self.router] + ([self.warmer] if self.config.warmer.image else [])
        groups = [f"/aws/lambda/{n}" for n in names]
        if self.config.pools:
            groups.append(self.ecs.log_group)
        return [f"aws logs tail {g} --region {self.region} --follow" for g in groups]

    def records(self) -> RecordStore | None:
        if self.api.bucket_region(self.bucket) is None:
            return None
        from mpfn.store.s3 import S3Store

        def opener() -> S3Store:
            return S3Store(
                self.bucket,
                self.prefix,
                endpoint_url=self.settings.endpoint_url,
                region=self.region,
                profile=self.settings.profile,
                access_key_id=self.settings.access_key_id,
                secret_access_key=self.settings.secret_access_key,
            )

        return RecordStore(opener, self.name, self.config.record_stage())

    # -- observe --------------------------------------------------------------------------

    def observe(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Resource | None]:
        readers: dict[str, Callable[[str], Resource | None]] = {
            S3Bucket.kind: self._observe_bucket,
            IamRole.kind: self._observe_role,
            LogGroup.kind: self._observe_log_group,
            ZipFunction.kind: self._observe_zip_function,
            ImageFunction.kind: self._observe_image_function,
            FunctionUrl.kind: self._observe_url,
            Schedule.kind: self._observe_schedule,
            **self.pool_readers(),
        }
        return {(kind, name): readers[kind](name) for kind, name in keys if kind in readers}

    def _observe_bucket(self, name: str) -> S3Bucket | None:
        region = self.api.bucket_region(name)
        if region is None:
            return None
        page = self.api.call("s3", "list_objects_v2", Bucket=name, MaxKeys=100)
        records = f"{self.prefix}/{RECORDS_DIR}" if self.prefix else RECORDS_DIR
        foreign = [o for o in page.get("Contents", []) if not o["Key"].startswith(records)]
        return S3Bucket(name, region=region, foreign_objects=len(foreign))

    def _observe_role(self, name: str) -> IamRole | None:
        role = self.api.get_role(name)
        if role is None:
            return None
        document = role["AssumeRolePolicyDocument"]
        if isinstance(document, str):
            from urllib.parse import unquote

            document = json.loads(unquote(document))
        policy = self.api.get_role_policy(name, POLICY_NAME)
        return IamRole(name, trust=canonical(document), policy=canonical(policy) if policy else "")

    def _observe_log_group(self, name: str) -> LogGroup | None:
        group = self.api.get_log_group(name)
        if group is None:
            return None
        return LogGroup(name, retention_days=int(group.get("retentionInDays") or 0))

    @staticmethod
    def _role_name(arn: str) -> str:
        return arn.rsplit("/", 1)[-1]

    @staticmethod
    def _env(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        variables = (config.get("Environment") or {}).get("Variables") or {}
        return tuple(sorted((str(k), str(v)) for k, v in variables.items()))

    @staticmethod
    def _vpc(config: dict[str, Any]) -> Vpc:
        attached = config.get("VpcConfig") or {}
        return Vpc.of(attached.get("SubnetIds") or [], attached.get("SecurityGroupIds") or [])

    def _observe_zip_function(self, name: str) -> ZipFunction | None:
        found = self.api.get_function(name)
        if found is None:
            return None
        config = found["Configuration"]
        vpc = self._vpc(config)
        return ZipFunction(
            name,
            role=self._role_name(config["Role"]),
            handler=str(config.get("Handler", "")),
            runtime=str(config.get("Runtime", "")),
            architecture=str((config.get("Architectures") or ["x86_64"])[0]),
            memory_mb=int(config.get("MemorySize", 0)),
            timeout_s=int(config.get("Timeout", 0)),
            environment=self._env(config),
            subnet_ids=vpc.subnet_ids,
            security_group_ids=vpc.security_group_ids,
            code_sha256=str(config.get("CodeSha256", "")),
        )

    def _observe_image_function(self, name: str) -> ImageFunction | None:
        found = self.api.get_function(name)
        if found is None:
            return None
        config = found["Configuration"]
        image = (config.get("ImageConfigResponse") or {}).get("ImageConfig") or {}
        vpc = self._vpc(config)
        return ImageFunction(
            name,
            role=self._role_name(config["Role"]),
            image_uri=str((found.get("Code") or {}).get("ImageUri", "")),
            entry_point=tuple(map(str, image.get("EntryPoint") or ())),
            command=tuple(map(str, image.get("Command") or ())),
            memory_mb=int(config.get("MemorySize", 0)),
            timeout_s=int(config.get("Timeout", 0)),
            environment=self._env(config),
            subnet_ids=vpc.subnet_ids,
            security_group_ids=vpc.security_group_ids,
        )

    def _observe_url(self, name: str) -> FunctionUrl | None:
        if self.api.get_function(name) is None:
            return None
        found = self.api.get_function_url(name)
        if found is None:
            return None
        auth = str(found["AuthType"])
        if auth == "NONE" and not self.api.public_url_permission(name):
            auth = "NONE (public access permission missing)"
        mode = str(found.get("InvokeMode") or "BUFFERED").upper()
        return FunctionUrl(name, auth=auth, invoke_mode=mode, url=str(found["FunctionUrl"]))

    def _observe_schedule(self, name: str) -> Schedule | None:
        found = self.api.get_schedule(name)
        if found is None:
            return None
        target = found.get("Target") or {}
        return Schedule(
            name,
            function=str(target.get("Arn", "")).rsplit(":function:", 1)[-1],
            role=self._role_name(str(target.get("RoleArn", ""))),
            expression=str(found.get("ScheduleExpression", "")),
        )

    # -- apply ----------------------------------------------------------------------------

    def apply(self, change: Change) -> dict[str, str]:
        method = getattr(self, f"_{change.action.value}_{type(change.resource).__name__}")
        result: dict[str, str] | None = method(change)
        return result or {}

    def _create_S3Bucket(self, change: Change) -> None:
        self.api.create_bucket(change.name)

    def _delete_S3Bucket(self, change: Change) -> None:
        self.api.delete_bucket(change.name)

    def _create_IamRole(self, change: Change) -> None:
        role = change.desired
        assert isinstance(role, IamRole)
        self.api.put_role(role.name, json.loads(role.trust), f"mpfn {self.config.prefix()}")
        self.api.put_role_policy(role.name, POLICY_NAME, json.loads(role.policy))

    _update_IamRole = _create_IamRole

    def _delete_IamRole(self, change: Change) -> None:
        self.api.delete_role(change.name)

    def _create_LogGroup(self, change: Change) -> None:
        group = change.desired
        assert isinstance(group, LogGroup)
        self.api.put_log_group(group.name, group.retention_days)

    _update_LogGroup = _create_LogGroup

    def _delete_LogGroup(self, change: Change) -> None:
        self.api.delete_log_group(change.name)

    def _function_config(
        self, fn: ZipFunction | ImageFunction, *, create: bool = False
    ) -> dict[str, Any]:
        """Create/update settings; an update always states the VpcConfig (empty lists
        detach), a create only when there is one."""
        config: dict[str, Any] = {
            "Role": self.api.role_arn(fn.role),
            "MemorySize": fn.memory_mb,
            "Timeout": fn.timeout_s,
            "Environment": {"Variables": dict(fn.environment)},
        }
        vpc = Vpc(fn.subnet_ids, fn.security_group_ids)
        if vpc or not create:
            config["VpcConfig"] = vpc.request()
        if isinstance(fn, ZipFunction):
            config |= {"Handler": fn.handler, "Runtime": fn.runtime}
        else:  # the warmer image, run by the Lambda runtime interface client
            config["ImageConfig"] = {
                "EntryPoint": list(fn.entry_point),
                "Command": list(fn.command),
            }
        return config

    def _create_ZipFunction(self, change: Change) -> dict[str, str]:
        fn = change.desired
        assert isinstance(fn, ZipFunction)
        code = Path(fn.code_path).read_bytes()
        self.api.create_function(
            FunctionName=fn.name,
            Code={"ZipFile": code},
            Architectures=[fn.architecture],
            Description="mpfn router",
            **self._function_config(fn, create=True),
        )
        return {"router_function": self.api.function_arn(fn.name)}

    def _update_ZipFunction(self, change: Change) -> None:
        fn = change.desired
        assert isinstance(fn, ZipFunction)
        changed = {fc.field for fc in change.fields}
        if changed & {"code_sha256", "architecture"}:
            code = Path(fn.code_path).read_bytes()
            self.api.update_function_code(fn.name, ZipFile=code, Architectures=[fn.architecture])
        if changed - {"code_sha256", "architecture"}:
            self.api.update_function_configuration(fn.name, **self._function_config(fn))

    def _create_ImageFunction(self, change: Change) -> dict[str, str]:
        fn = change.desired
        assert isinstance(fn, ImageFunction)
        self.api.create_function(
            FunctionName=fn.name,
            PackageType="Image",
            Code={"ImageUri": fn.image_uri},
            Description="mpfn warmer",
            **self._function_config(fn, create=True),
        )
        return {"warmer_function": self.api.function_arn(fn.name)}

    def _update_ImageFunction(self, change: Change) -> None:
        fn = change.desired
        assert isinstance(fn, ImageFunction)
        changed = {fc.field for fc in change.fields}
        if "image_uri" in changed:
            self.api.update_function_code(fn.name, ImageUri=fn.image_uri)
        if changed - {"image_uri"}:
            self.api.update_function_configuration(fn.name, **self._function_config(fn))

    def _delete_ZipFunction(self, change: Change) -> None:
        self.api.delete_function(change.name)

    _delete_ImageFunction = _delete_ZipFunction

    def _create_FunctionUrl(self, change: Change) -> dict[str, str]:
        url = change.desired
        assert isinstance(url, FunctionUrl)
        return {"router_url": self.api.put_function_url(url.name, url.auth, url.invoke_mode)}

    _update_FunctionUrl = _create_FunctionUrl

    def _delete_FunctionUrl(self, change: Change) -> None:
        if self.api.get_function(change.name) is not None:
            self.api.delete_function_url(change.name)

    def _create_Schedule(self, change: Change) -> None:
        schedule = change.desired
        assert isinstance(schedule, Schedule)
        self.api.put_schedule(
            schedule.name,
            create=change.action is Action.CREATE,
            ScheduleExpression=schedule.expression,
            FlexibleTimeWindow={"Mode": "OFF"},
            State="ENABLED",
            Description=f"mpfn warmer, {self.config.prefix()}",
            Target={
                "Arn": self.api.function_arn(schedule.function),
                "RoleArn": self.api.role_arn(schedule.role),
                "Input": json.dumps({"source": "mpfn.scheduler"}),
            },
        )

    _update_Schedule = _create_Schedule

    def _delete_Schedule(self, change: Change) -> None:
        self.api.delete_schedule(change.name)
