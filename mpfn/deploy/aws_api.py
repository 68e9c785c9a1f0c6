"""The one wrapper through which deploy talks to AWS (S3, IAM, Lambda, Scheduler, Logs, and
for pools ECS, Cloud Map, EC2 launch templates and Auto Scaling).

Every call goes through `AwsApi`, built from region, endpoint and credentials in the
config (an endpoint points it at an emulator on loopback). Readers return None for
"does not exist"; every other failure becomes an `AwsError` with one line of text. The
wrapper holds no deploy logic: no diffing, no naming, no ordering.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpfn.deploy.errors import DeployFailure

_NOT_FOUND = frozenset(
    {
        "NoSuchEntity",
        "ResourceNotFoundException",
        "NoSuchBucket",
        "404",
        "NotFound",
        "ClusterNotFoundException",
        "NamespaceNotFound",
        "ServiceNotFound",
        "OperationNotFound",
        "InvalidLaunchTemplateName.NotFoundException",
        "InvalidLaunchTemplateId.NotFound",
    }
)

#: What Lambda says while a role change has not reached it yet.
_IAM_SETTLING = ("cannot be assumed", "does not have permissions to call CreateNetworkInterface")


class AwsError(DeployFailure, RuntimeError):
    """An AWS call failed; the message is one line naming the operation."""


@dataclass(frozen=True)
class AwsSettings:
    region: str
    endpoint_url: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


class AwsApi:
    """Typed calls used by the AWS target; clients are created once per service."""

    def __init__(
        self,
        settings: AwsSettings,
        *,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.sleep = sleep
        self._session = session or boto3.session.Session(
            profile_name=settings.profile,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            region_name=settings.region,
        )
        self._config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 4})
        self._clients: dict[str, Any] = {}
        self._account: str | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service,
                region_name=self.settings.region,
                endpoint_url=self.settings.endpoint_url,
                config=self._config,
            )
        return self._clients[service]

    def call(self, service: str, operation: str, /, **kwargs: Any) -> dict[str, Any]:
        """One API call; errors become `AwsError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result: dict[str, Any] = getattr(self.client(service), operation)(**kwargs)
        except ClientError as exc:
            raise AwsError(f"{service}.{operation}: {_one_line(exc)}") from None
        except BotoCoreError as exc:
            raise AwsError(f"{service}.{operation}: {_one_line(exc)}") from None
        return result

    def find(self, service: str, operation: str, /, **kwargs: Any) -> dict[str, Any] | None:
        """Like `call`, but None when the resource does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result: dict[str, Any] = getattr(self.client(service), operation)(**kwargs)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise AwsError(f"{service}.{operation}: {_one_line(exc)}") from None
        except BotoCoreError as exc:
            raise AwsError(f"{service}.{operation}: {_one_line(exc)}") from None
        return result

    # -- identity -----------------------------------------------------------------------

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = str(self.call("sts", "get_caller_identity")["Account"])
        return self._account

    def role_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{name}"

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.settings.region}:{self.account}:function:{name}"

    # -- S3 -----------------------------------------------------------------------------

    def bucket_region(self, bucket: str) -> str | None:
        found = self.find("s3", "head_bucket", Bucket=bucket)
        if found is None:
            return None
        headers = found.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return str(headers.get("x-amz-bucket-region") or self.settings.region)

    def create_bucket(self, bucket: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if self.settings.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
        self.call("s3", "create_bucket", **kwargs)
        self.call(
            "s3",
            "put_public_access_block",
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys: list[str] = []
        token: dict[str, Any] = {}
        while True:
            page = self.call("s3", "list_objects_v2", Bucket=bucket, Prefix=prefix, **token)
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return keys
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete_bucket(self, bucket: str) -> None:
        """Delete every object (and version), then the bucket."""
        while True:
            page = self.call("s3", "list_object_versions", Bucket=bucket)
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if not doomed:
                doomed = [{"Key": k} for k in self.list_keys(bucket)][:1000]
            if not doomed:
                break
            self.call("s3", "delete_objects", Bucket=bucket, Delete={"Objects": doomed[:1000]})
        self.call("s3", "delete_bucket", Bucket=bucket)

    # -- IAM ----------------------------------------------------------------------------

    def get_role(self, name: str) -> dict[str, Any] | None:
        found = self.find("iam", "get_role", RoleName=name)
        return found["Role"] if found else None

    def get_role_policy(self, role: str, policy: str) -> dict[str, Any] | None:
        found = self.find("iam", "get_role_policy", RoleName=role, PolicyName=policy)
        if found is None:
            return None
        document = found["PolicyDocument"]
        return json.loads(document) if isinstance(document, str) else dict(document)

    def put_role(self, name: str, trust: dict[str, Any], description: str) -> None:
        if self.get_role(name) is None:
            self.call(
                "iam",
                "create_role",
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=description,
            )
        else:
            self.call(
                "iam", "update_assume_role_policy", RoleName=name, PolicyDocument=json.dumps(trust)
            )

    def put_role_policy(self, role: str, policy: str, document: dict[str, Any]) -> None:
        self.call(
            "iam",
            "put_role_policy",
            RoleName=role,
            PolicyName=policy,
            PolicyDocument=json.dumps(document),
        )

    def delete_role(self, name: str) -> None:
        for policy in self.call("iam", "list_role_policies", RoleName=name)["PolicyNames"]:
            self.call("iam", "delete_role_policy", RoleName=name, PolicyName=policy)
        attached = self.call("iam", "list_attached_role_policies", RoleName=name)
        for policy in attached["AttachedPolicies"]:
            self.call("iam", "detach_role_policy", RoleName=name, PolicyArn=policy["PolicyArn"])
        self.call("iam", "delete_role", RoleName=name)

    # -- Lambda -------------------------------------------------------------------------

    def get_function(self, name: str) -> dict[str, Any] | None:
        return self.find("lambda", "get_function", FunctionName=name)

    def _settling(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """A Lambda call retried while IAM has not yet propagated a role change: a
        just-created role that cannot be assumed yet, or network-interface permissions
        just added for a VpcConfig that Lambda does not see yet."""
        for attempt in range(8):
            try:
                return self.call("lambda", operation, **kwargs)
            except AwsError as exc:
                if not any(text in str(exc) for text in _IAM_SETTLING) or attempt == 7:
                    raise
                self.sleep(min(2.0 * (attempt + 1), 10.0))
        raise AssertionError("unreachable")

    def create_function(self, **kwargs: Any) -> dict[str, Any]:
        """Create a function (retried while its role settles), then wait until it is active."""
        result = self._settling("create_function", **kwargs)
        self.wait_function(kwargs["FunctionName"])
        return result

    def wait_function(self, name: str, attempts: int = 120) -> None:
        """Wait until the function is Active and its last update finished."""
        for _ in range(attempts):
            config = self.call("lambda", "get_function_configuration", FunctionName=name)
            state = config.get("State", "Active")
            update = config.get("LastUpdateStatus", "Successful")
            if state == "Failed" or update == "Failed":
                reason = config.get("StateReason") or config.get("LastUpdateStatusReason")
                raise AwsError(f"lambda {name}: {reason or 'failed'}")
            if state == "Active" and update == "Successful":
                return
            self.sleep(1.0)
        raise AwsError(f"lambda {name}: still updating after {attempts} checks")

    def update_function_code(self, name: str, **code: Any) -> None:
        self.call("lambda", "update_function_code", FunctionName=name, **code)
        self.wait_function(name)

    def update_function_configuration(self, name: str, **config: Any) -> None:
        self._settling("update_function_configuration", FunctionName=name, **config)
        self.wait_function(name)

    def delete_function(self, name: str) -> None:
        self.call("lambda", "delete_function", FunctionName=name)

    def get_function_url(self, name: str) -> dict[str, Any] | None:
        return self.find("lambda", "get_function_url_config", FunctionName=name)

    def public_url_permission(self, name: str) -> bool:
        policy = self.find("lambda", "get_policy", FunctionName=name)
        if policy is None:
            return False
        statements = json.loads(policy["Policy"]).get("Statement", [])
        return any(s.get("Sid") == "FunctionURLAllowPublicAccess" for s in statements)

    def put_function_url(self, name: str, auth: str, invoke_mode: str = "BUFFERED") -> str:
        verb = "create" if self.get_function_url(name) is None else "update"
        operation = f"{verb}_function_url_config"
        url = self.call(
            "lambda", operation, FunctionName=name, AuthType=auth, InvokeMode=invoke_mode
        )
        public = self.public_url_permission(name)
        if auth == "NONE" and not public:
            self.call(
                "lambda",
                "add_permission",
                FunctionName=name,
                StatementId="FunctionURLAllowPublicAccess",
                Action="lambda:InvokeFunctionUrl",
                Principal="*",
                FunctionUrlAuthType="NONE",
            )
        elif auth != "NONE" and public:
            self.call(
                "lambda",
                "remove_permission",
                FunctionName=name,
                StatementId="FunctionURLAllowPublicAccess",
            )
        return str(url["FunctionUrl"])

    def delete_function_url(self, name: str) -> None:
        if self.public_url_permission(name):
            self.call(
                "lambda",
                "remove_permission",
                FunctionName=name,
                StatementId="FunctionURLAllowPublicAccess",
            )
        self.call("lambda", "delete_function_url_config", FunctionName=name)

    # -- EventBridge Scheduler ----------------------------------------------------------

    def get_schedule(self, name: str) -> dict[str, Any] | None:
        return self.find("scheduler", "get_schedule", Name=name)

    def put_schedule(self, name: str, *, create: bool, **spec: Any) -> None:
        operation = "create_schedule" if create else "update_schedule"
        self.call("scheduler", operation, Name=name, **spec)

    def delete_schedule(self, name: str) -> None:
        self.call("scheduler", "delete_schedule", Name=name)

    # -- CloudWatch Logs ----------------------------------------------------------------

    def get_log_group(self, name: str) -> dict[str, Any] | None:
        page = self.call("logs", "describe_log_groups", logGroupNamePrefix=name)
        for group in page.get("logGroups", []):
            if group.get("logGroupName") == name:
                return dict(group)
        return None

    def put_log_group(self, name: str, retention_days: int) -> None:
        if self.get_log_group(name) is None:
            self.call("logs", "create_log_group", logGroupName=name)
        self.call("logs", "put_retention_policy", logGroupName=name, retentionInDays=retention_days)

    def delete_log_group(self, name: str) -> None:
        self.call("logs", "delete_log_group", logGroupName=name)

    # -- pools: EC2, IAM instance profiles, Auto Scaling ----------------------------------

    def retrying(
        self,
        service: str,
        operation: str,
        /,
        *,
        busy: tuple[str, ...],
        attempts: int = 30,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """A call AWS refuses while something it depends on winds down (a draining
        service, a terminating instance): retried while the error names one of `busy`."""
        for attempt in range(attempts):
            try:
                return self.call(service, operation, **kwargs)
            except AwsError as exc:
                if not any(text in str(exc) for text in busy) or attempt == attempts - 1:
                    raise
                self.sleep(min(2.0 * (attempt + 1), 10.0))
        raise AssertionError("unreachable")

    def subnet_vpc(self, subnet: str) -> str:
        found = self.call("ec2", "describe_subnets", SubnetIds=[subnet])["Subnets"]
        if not found:
            raise AwsError(f"ec2.describe_subnets: no subnet {subnet}")
        return str(found[0]["VpcId"])

    def get_instance_profile(self, name: str) -> dict[str, Any] | None:
        found = self.find("iam", "get_instance_profile", InstanceProfileName=name)
        return found["InstanceProfile"] if found else None

    def put_instance_profile(self, name: str, role: str) -> None:
        """The profile `name` holding exactly `role`."""
        profile = self.get_instance_profile(name)
        if profile is None:
            self.call("iam", "create_instance_profile", InstanceProfileName=name)
            held: list[str] = []
        else:
            held = [r["RoleName"] for r in profile.get("Roles", [])]
        for other in held:
            if other != role:
                self.call(
                    "iam",
                    "remove_role_from_instance_profile",
                    InstanceProfileName=name,
                    RoleName=other,
                )
        if role not in held:
            self.call(
                "iam", "add_role_to_instance_profile", InstanceProfileName=name, RoleName=role
            )

    def delete_instance_profile(self, name: str) -> None:
        profile = self.get_instance_profile(name)
        for role in (profile or {}).get("Roles", []):
            self.call(
                "iam",
                "remove_role_from_instance_profile",
                InstanceProfileName=name,
                RoleName=role["RoleName"],
            )
        self.call("iam", "delete_instance_profile", InstanceProfileName=name)

    def get_launch_template(self, name: str) -> dict[str, Any] | None:
        """The default version of the launch template `name`."""
        found = self.find(
            "ec2",
            "describe_launch_template_versions",
            LaunchTemplateName=name,
            Versions=["$Default"],
        )
        versions = (found or {}).get("LaunchTemplateVersions") or []
        return dict(versions[0]) if versions else None

    def put_launch_template(self, name: str, data: dict[str, Any]) -> None:
        """Create the template, or add a version with `data` and make it the default."""
        if self.get_launch_template(name) is None:
            self.call(
                "ec2", "create_launch_template", LaunchTemplateName=name, LaunchTemplateData=data
            )
            return
        version = self.call(
            "ec2",
            "create_launch_template_version",
            LaunchTemplateName=name,
            LaunchTemplateData=data,
        )["LaunchTemplateVersion"]["VersionNumber"]
        self.call(
            "ec2", "modify_launch_template", LaunchTemplateName=name, DefaultVersion=str(version)
        )

    def get_auto_scaling_group(self, name: str) -> dict[str, Any] | None:
        page = self.call(
            "autoscaling", "describe_auto_scaling_groups", AutoScalingGroupNames=[name]
        )
        groups = [g for g in page.get("AutoScalingGroups", []) if g.get("Status") is None]
        return dict(groups[0]) if groups else None

    # -- pools: ECS -----------------------------------------------------------------------

    def get_cluster(self, name: str) -> dict[str, Any] | None:
        found = self.call("ecs", "describe_clusters", clusters=[name])["clusters"]
        active = [c for c in found if c.get("status") in ("ACTIVE", "PROVISIONING")]
        return dict(active[0]) if active else None

    def get_ecs_service(self, cluster: str, name: str) -> dict[str, Any] | None:
        """The service, unless it is absent or deleted (INACTIVE, DRAINING)."""
        found = self.find("ecs", "describe_services", cluster=cluster, services=[name])
        services = [s for s in (found or {}).get("services", []) if s.get("status") == "ACTIVE"]
        return dict(services[0]) if services else None

    def wait_service_gone(self, cluster: str, name: str, attempts: int = 60) -> None:
        """Wait until a deleted service has drained (ECS keeps it DRAINING a while)."""
        for _ in range(attempts):
            found = self.find("ecs", "describe_services", cluster=cluster, services=[name])
            live = [s for s in (found or {}).get("services", []) if s.get("status") != "INACTIVE"]
            if not live:
                return
            self.sleep(5.0)
        raise AwsError(f"ecs service {cluster}/{name}: still draining after {attempts} checks")

    def task_definition_arns(self, family: str, status: str = "ACTIVE") -> list[str]:
        """The revisions of exactly `family` in `status` (ACTIVE, INACTIVE), newest first."""
        arns: list[str] = []
        token: dict[str, Any] = {}
        while True:
            page = self.call(
                "ecs",
                "list_task_definitions",
                familyPrefix=family,
                status=status,
                sort="DESC",
                **token,
            )
            arns += [
                a
                for a in page.get("taskDefinitionArns", [])
                if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
            ]
            if not page.get("nextToken"):
                break
            token = {"nextToken": page["nextToken"]}
        return sorted(arns, key=lambda a: int(a.rsplit(":", 1)[-1]), reverse=True)

    def describe_task_definition(self, ref: str) -> dict[str, Any]:
        found = self.call("ecs", "describe_task_definition", taskDefinition=ref)
        return dict(found["taskDefinition"])

    def deregister_task_definitions(self, arns: list[str]) -> None:
        """Make revisions INACTIVE: no new task starts from them, running ones keep them."""
        for arn in arns:
            self.call("ecs", "deregister_task_definition", taskDefinition=arn)

    def delete_task_definitions(self, arns: list[str]) -> None:
        """Delete INACTIVE revisions (ECS removes each once nothing uses it)."""
        for start in range(0, len(arns), 10):
            self.call("ecs", "delete_task_definitions", taskDefinitions=arns[start : start + 10])

    def get_capacity_provider(self, name: str) -> dict[str, Any] | None:
        page = self.call("ecs", "describe_capacity_providers", capacityProviders=[name])
        found = [
            c
            for c in page.get("capacityProviders", [])
            if c.get("status") == "ACTIVE" and c.get("name") == name
        ]
        return dict(found[0]) if found else None

    def set_cluster_capacity_provider(self, cluster: str, name: str, *, attached: bool) -> None:
        """Attach `name` to the cluster (or detach it), keeping the others attached."""
        current = self.get_cluster(cluster)
        if current is None:
            return
        providers = [p for p in current.get("capacityProviders", []) if p != name]
        strategy = [
            s
            for s in current.get("defaultCapacityProviderStrategy", [])
            if s.get("capacityProvider") != name
        ]
        self.call(
            "ecs",
            "put_cluster_capacity_providers",
            cluster=cluster,
            capacityProviders=[*providers, name] if attached else providers,
            defaultCapacityProviderStrategy=strategy,
        )

    # -- pools: Cloud Map -----------------------------------------------------------------

    def find_namespace(self, name: str) -> dict[str, Any] | None:
        """The private DNS namespace `name` (listed, then matched by name and type)."""
        token: dict[str, Any] = {}
        while True:
            page = self.call(
                "servicediscovery",
                "list_namespaces",
                Filters=[{"Name": "TYPE", "Values": ["DNS_PRIVATE"], "Condition": "EQ"}],
                **token,
            )
            for namespace in page.get("Namespaces", []):
                if namespace.get("Name") == name and namespace.get("Type") == "DNS_PRIVATE":
                    return dict(namespace)
            if not page.get("NextToken"):
                return None
            token = {"NextToken": page["NextToken"]}

    def tags_of(self, arn: str) -> dict[str, str]:
        tags = self.call("servicediscovery", "list_tags_for_resource", ResourceARN=arn)
        return {str(t["Key"]): str(t["Value"]) for t in tags.get("Tags", [])}

    def wait_operation(self, operation_id: str, attempts: int = 120) -> dict[str, Any]:
        """Wait for a Cloud Map operation to succeed; its targets."""
        for _ in range(attempts):
            found = self.call("servicediscovery", "get_operation", OperationId=operation_id)
            operation = found["Operation"]
            if operation["Status"] == "SUCCESS":
                return dict(operation.get("Targets") or {})
            if operation["Status"] == "FAIL":
                reason = operation.get("ErrorMessage") or operation.get("ErrorCode")
                raise AwsError(f"servicediscovery operation {operation_id}: {reason}")
            self.sleep(2.0)
        raise AwsError(f"servicediscovery operation {operation_id}: unfinished")

    def find_discovery_service(self, namespace_id: str, name: str) -> dict[str, Any] | None:
        """The Cloud Map service `name` of the namespace (each candidate is read back, as
        a listing does not say which namespace a service is in)."""
        token: dict[str, Any] = {}
        while True:
            page = self.call(
                "servicediscovery",
                "list_services",
                Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}],
                **token,
            )
            for summary in page.get("Services", []):
                if summary.get("Name") != name:
                    continue
                found = self.find("servicediscovery", "get_service", Id=summary["Id"])
                service = (found or {}).get("Service") or {}
                if service.get("NamespaceId") == namespace_id:
                    return dict(service)
            if not page.get("NextToken"):
                return None
            token = {"NextToken": page["NextToken"]}
