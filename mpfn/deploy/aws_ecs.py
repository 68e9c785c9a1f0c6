"""The aws target's pools: their desired resources, read-only observation and apply.

`EcsPools` is mixed into `AwsTarget`: `pool_keys` and `pool_resources` extend what the
target deploys, `pool_readers` its observation, and the `_create_/_update_/_delete_<Type>`
methods are found by `AwsTarget.apply` like its own. Every call goes through `AwsApi`.
The shapes, names and policies are in `aws_pools` (pure).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from mpfn.deploy.aws_api import AwsApi
from mpfn.deploy.aws_pools import (
    DNS_TTL_S,
    AutoScalingGroup,
    CapacityProvider,
    DiscoveryService,
    DnsNamespace,
    EcsCluster,
    EcsNames,
    EcsService,
    InstanceProfile,
    LaunchTemplate,
    PoolImages,
    TaskDefinition,
    container_definitions,
    execution_policy,
    host_policy,
    launch_of,
    task_policy,
    task_size,
    task_spec,
    user_data,
)
from mpfn.deploy.aws_resources import IamRole, LogGroup, Scope, Vpc, trust
from mpfn.deploy.models import Change, Resource, ResourceKey
from mpfn.deploy.spec import DeployConfig, PoolConfig

VPC_TAG = "mpfn:vpc"
FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
#: What ECS and Cloud Map say while something a deletion waits for winds down.
_DRAINING = (
    "ClusterContainsServices",
    "ClusterContainsTasks",
    "ClusterContainsContainerInstances",
    "ResourceInUse",
    "has registered instances",
)


def _name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class EcsPools:
    """`deploy.pools` as ECS services (mixed into `AwsTarget`)."""

    config: DeployConfig
    api: AwsApi
    region: str
    vpc: Vpc
    ecs: EcsNames
    pool_images: dict[str, PoolImages]
    _pool_vpc_id: str | None = None

    # -- desired --------------------------------------------------------------------------

    def _gpu_pools(self) -> list[PoolConfig]:
        return [p for p in self.config.pools if launch_of(p) == "EC2"]

    def pool_keys(self) -> list[ResourceKey]:
        """Every pool resource this config deploys (none without pools)."""
        pools, names = self.config.pools, self.ecs
        if not pools:
            return []
        keys = [
            (IamRole.kind, names.execution_role),
            (IamRole.kind, names.task_role),
            (LogGroup.kind, names.log_group),
            (EcsCluster.kind, names.cluster),
            (DnsNamespace.kind, names.namespace),
        ]
        if self._gpu_pools():
            keys += [
                (IamRole.kind, names.host_role),
                (InstanceProfile.kind, names.host_role),
                (LaunchTemplate.kind, names.gpu),
                (AutoScalingGroup.kind, names.gpu),
                (CapacityProvider.kind, names.gpu),
            ]
        for pool in pools:
            keys += [
                (DiscoveryService.kind, names.host(pool)),
                (TaskDefinition.kind, names.family(pool)),
                (EcsService.kind, f"{names.cluster}/{pool.id}"),
            ]
        return keys

    def pool_vpc_id(self) -> str:
        """`aws.vpc.vpc_id`, else the VPC of the first subnet (one EC2 read)."""
        if self._pool_vpc_id is None:
            vpc = self.config.aws.vpc
            assert vpc is not None, "check_pools requires aws.vpc with pools"
            self._pool_vpc_id = vpc.vpc_id or self.api.subnet_vpc(vpc.subnet_ids[0])
        return self._pool_vpc_id

    def task_definition(self, pool: PoolConfig, state: str) -> TaskDefinition:
        names = self.ecs
        launch = launch_of(pool)
        cpu, memory = task_size(pool, launch)
        containers, volumes = container_definitions(
            pool,
            self.pool_images[pool.id],
            state=state,
            log_group=names.log_group,
            region=self.region,
        )
        images, spec = task_spec(containers, volumes)
        request = {
            "family": names.family(pool),
            "networkMode": "awsvpc",
            "requiresCompatibilities": [launch],
            "cpu": str(cpu),
            "memory": str(memory),
            "executionRoleArn": self.api.role_arn(names.execution_role),
            "taskRoleArn": self.api.role_arn(names.task_role),
            "containerDefinitions": containers,
            "volumes": volumes,
        }
        return TaskDefinition(
            names.family(pool),
            compatibility=launch,
            cpu=str(cpu),
            memory=str(memory),
            execution_role=names.execution_role,
            task_role=names.task_role,
            images=images,
            spec=spec,
            request=json.dumps(request, sort_keys=True),
        )

    def pool_resources(self, scope: Scope, state: str) -> list[Resource]:
        """The pool resources of the config (none without pools)."""
        pools, names = self.config.pools, self.ecs
        if not pools:
            return []
        images = sorted({i for p in self.pool_images.values() for i in (p.image, p.adapter) if i})
        ecs_trust = trust("ecs-tasks.amazonaws.com", self.api.account)
        resources: list[Resource] = [
            IamRole(
                names.execution_role,
                trust=ecs_trust,
                policy=execution_policy(scope, names.log_group, images),
            ),
            IamRole(names.task_role, trust=ecs_trust, policy=task_policy(scope)),
            LogGroup(names.log_group, retention_days=self.config.aws.log_retention_days),
            EcsCluster(names.cluster),
            DnsNamespace(names.namespace, vpc_id=self.pool_vpc_id()),
        ]
        gpu = self._gpu_pools()
        if gpu:
            ecs = self.config.aws.ecs
            assert ecs.gpu_ami is not None, "check_pools requires aws.ecs.gpu_ami"
            resources += [
                IamRole(
                    names.host_role,
                    trust=trust("ec2.amazonaws.com"),
                    policy=host_policy(scope, names.cluster),
                ),
                InstanceProfile(names.host_role, role=names.host_role),
                LaunchTemplate(
                    names.gpu,
                    image_id=ecs.gpu_ami,
                    instance_type=ecs.gpu_instance_type,
                    instance_profile=names.host_role,
                    security_group_ids=self.vpc.security_group_ids,
                    user_data=user_data(names.cluster),
                ),
                AutoScalingGroup(
                    names.gpu,
                    launch_template=names.gpu,
                    max_size=ecs.gpu_max_instances or max(1, sum(p.replicas for p in gpu)),
                    subnet_ids=self.vpc.subnet_ids,
                ),
                CapacityProvider(names.gpu, auto_scaling_group=names.gpu, cluster=names.cluster),
            ]
        for pool in pools:
            task = self.task_definition(pool, state)
            resources += [
                DiscoveryService(names.host(pool), ttl_s=DNS_TTL_S),
                task,
                EcsService(
                    f"{names.cluster}/{pool.id}",
                    task_definition=task.name,
                    task_digest=task.digest(),
                    desired_count=pool.replicas,
                    launch=launch_of(pool),
                    scaled=pool.max_replicas is not None,
                    subnet_ids=self.vpc.subnet_ids,
                    security_group_ids=self.vpc.security_group_ids,
                    registry=names.host(pool),
                ),
            ]
        return resources

    def pool_notes(self) -> list[str]:
        if not self.config.pools:
            return []
        names = self.ecs
        notes = [
            f"pools run as ECS services of cluster {names.cluster}, reached at "
            + ", ".join(names.endpoint(p) for p in self.config.pools)
            + ": their security groups must admit the router and warmer on the pool ports"
        ]
        if self._gpu_pools():
            notes.append(
                f"GPU pools run on {self.config.aws.ecs.gpu_instance_type} instances of "
                f"Auto Scaling group {names.gpu} (ECS scales it from 0 through capacity "
                f"provider {names.gpu})"
            )
        return notes

    # -- observe --------------------------------------------------------------------------

    def pool_readers(self) -> dict[str, Callable[[str], Resource | None]]:
        return {
            InstanceProfile.kind: self._observe_instance_profile,
            EcsCluster.kind: self._observe_cluster,
            DnsNamespace.kind: self._observe_namespace,
            LaunchTemplate.kind: self._observe_launch_template,
            AutoScalingGroup.kind: self._observe_auto_scaling_group,
            CapacityProvider.kind: self._observe_capacity_provider,
            DiscoveryService.kind: self._observe_discovery_service,
            TaskDefinition.kind: self._observe_task_definition,
            EcsService.kind: self._observe_ecs_service,
        }

    def _observe_instance_profile(self, name: str) -> InstanceProfile | None:
        profile = self.api.get_instance_profile(name)
        if profile is None:
            return None
        roles = [str(r["RoleName"]) for r in profile.get("Roles", [])]
        return InstanceProfile(name, role=",".join(sorted(roles)))

    def _observe_cluster(self, name: str) -> EcsCluster | None:
        return EcsCluster(name) if self.api.get_cluster(name) else None

    def _observe_namespace(self, name: str) -> DnsNamespace | None:
        found = self.api.find_namespace(name)
        if found is None:
            return None
        return DnsNamespace(name, vpc_id=self.api.tags_of(found["Arn"]).get(VPC_TAG, ""))

    def _observe_launch_template(self, name: str) -> LaunchTemplate | None:
        found = self.api.get_launch_template(name)
        if found is None:
            return None
        data = found.get("LaunchTemplateData") or {}
        encoded = str(data.get("UserData") or "")
        return LaunchTemplate(
            name,
            image_id=str(data.get("ImageId", "")),
            instance_type=str(data.get("InstanceType", "")),
            instance_profile=str((data.get("IamInstanceProfile") or {}).get("Name", "")),
            security_group_ids=tuple(sorted(data.get("SecurityGroupIds") or ())),
            user_data=base64.b64decode(encoded).decode() if encoded else "",
        )

    def _observe_auto_scaling_group(self, name: str) -> AutoScalingGroup | None:
        found = self.api.get_auto_scaling_group(name)
        if found is None:
            return None
        zones = str(found.get("VPCZoneIdentifier") or "")
        return AutoScalingGroup(
            name,
            launch_template=str((found.get("LaunchTemplate") or {}).get("LaunchTemplateName", "")),
            max_size=int(found.get("MaxSize", 0)),
            subnet_ids=tuple(sorted(s for s in zones.split(",") if s)),
        )

    def _observe_capacity_provider(self, name: str) -> CapacityProvider | None:
        found = self.api.get_capacity_provider(name)
        if found is None:
            return None
        group = str((found.get("autoScalingGroupProvider") or {}).get("autoScalingGroupArn", ""))
        cluster = self.api.get_cluster(self.ecs.cluster)
        attached = cluster is not None and name in cluster.get("capacityProviders", [])
        return CapacityProvider(
            name,
            auto_scaling_group=group.rsplit("autoScalingGroupName/", 1)[-1],
            cluster=self.ecs.cluster if attached else "",
        )

    def _discovery_service(self, name: str) -> dict[str, Any] | None:
        service, _, namespace = name.partition(".")
        found = self.api.find_namespace(namespace)
        if found is None:
            return None
        return self.api.find_discovery_service(str(found["Id"]), service)

    def _observe_discovery_service(self, name: str) -> DiscoveryService | None:
        found = self._discovery_service(name)
        if found is None:
            return None
        records = (found.get("DnsConfig") or {}).get("DnsRecords") or [{}]
        return DiscoveryService(name, ttl_s=int(records[0].get("TTL", 0)))

    @staticmethod
    def _task_definition_of(found: dict[str, Any]) -> TaskDefinition:
        images, spec = task_spec(found.get("containerDefinitions", []), found.get("volumes", []))
        return TaskDefinition(
            str(found["family"]),
            compatibility=str((found.get("requiresCompatibilities") or ["EC2"])[0]),
            cpu=str(found.get("cpu", "")),
            memory=str(found.get("memory", "")),
            execution_role=_name(str(found.get("executionRoleArn", ""))),
            task_role=_name(str(found.get("taskRoleArn", ""))),
            images=images,
            spec=spec,
            revision=int(found.get("revision", 0)),
        )

    def _observe_task_definition(self, name: str) -> TaskDefinition | None:
        arns = self.api.task_definition_arns(name)
        if not arns:
            return None
        return self._task_definition_of(self.api.describe_task_definition(arns[0]))

    def _registry_name(self, service: dict[str, Any]) -> str:
        registries = service.get("serviceRegistries") or []
        if not registries:
            return ""
        found = self.api.find(
            "servicediscovery", "get_service", Id=_name(registries[0]["registryArn"])
        )
        if found is None:
            return ""
        discovery = found["Service"]
        namespace = self.api.find("servicediscovery", "get_namespace", Id=discovery["NamespaceId"])
        if namespace is None:
            return ""
        return f"{discovery['Name']}.{namespace['Namespace']['Name']}"

    def _observe_ecs_service(self, name: str) -> EcsService | None:
        cluster, _, pool = name.partition("/")
        found = self.api.get_ecs_service(cluster, pool)
        if found is None:
            return None
        task = self._task_definition_of(self.api.describe_task_definition(found["taskDefinition"]))
        strategy = found.get("capacityProviderStrategy") or []
        if strategy:
            provider = str(strategy[0].get("capacityProvider", ""))
            launch = "FARGATE" if provider in FARGATE_PROVIDERS else "EC2"
        else:
            launch = str(found.get("launchType") or "EC2")
        network = (found.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
        vpc = Vpc.of(network.get("subnets") or [], network.get("securityGroups") or [])
        pool_id = name.partition("/")[2]
        config = next((p for p in self.config.pools if p.id == pool_id), None)
        scaled = config is not None and config.max_replicas is not None
        return EcsService(
            name,
            task_definition=task.name,
            task_digest=task.digest(),
            # a scaled pool's size is the warmer's and the routers': not a difference
            desired_count=config.replicas
            if scaled and config
            else int(found.get("desiredCount", 0)),
            scaled=scaled,
            launch=launch,
            subnet_ids=vpc.subnet_ids,
            security_group_ids=vpc.security_group_ids,
            registry=self._registry_name(found),
        )

    # -- apply ----------------------------------------------------------------------------

    def _create_InstanceProfile(self, change: Change) -> None:
        profile = change.desired
        assert isinstance(profile, InstanceProfile)
        self.api.put_instance_profile(profile.name, profile.role)

    _update_InstanceProfile = _create_InstanceProfile

    def _delete_InstanceProfile(self, change: Change) -> None:
        self.api.delete_instance_profile(change.name)

    def _create_EcsCluster(self, change: Change) -> dict[str, str]:
        found = self.api.call("ecs", "create_cluster", clusterName=change.name)
        return {"pool_cluster": str(found["cluster"]["clusterArn"])}

    def _delete_EcsCluster(self, change: Change) -> None:
        self.api.retrying("ecs", "delete_cluster", busy=_DRAINING, cluster=change.name)

    def _create_DnsNamespace(self, change: Change) -> dict[str, str]:
        namespace = change.desired
        assert isinstance(namespace, DnsNamespace)
        operation = self.api.call(
            "servicediscovery",
            "create_private_dns_namespace",
            Name=namespace.name,
            Vpc=namespace.vpc_id,
            Description=f"mpfn pools, {self.config.prefix()}",
            Tags=[{"Key": VPC_TAG, "Value": namespace.vpc_id}],
        )
        self.api.wait_operation(operation["OperationId"])
        return {"pool_namespace": namespace.name}

    def _delete_DnsNamespace(self, change: Change) -> None:
        found = self.api.find_namespace(change.name)
        if found is None:
            return
        operation = self.api.retrying(
            "servicediscovery", "delete_namespace", busy=_DRAINING, Id=found["Id"]
        )
        self.api.wait_operation(operation["OperationId"])

    def _create_LaunchTemplate(self, change: Change) -> None:
        template = change.desired
        assert isinstance(template, LaunchTemplate)
        self.api.put_launch_template(
            template.name,
            {
                "ImageId": template.image_id,
                "InstanceType": template.instance_type,
                "IamInstanceProfile": {"Name": template.instance_profile},
                "SecurityGroupIds": list(template.security_group_ids),
                "UserData": base64.b64encode(template.user_data.encode()).decode(),
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            },
        )

    _update_LaunchTemplate = _create_LaunchTemplate

    def _delete_LaunchTemplate(self, change: Change) -> None:
        self.api.call("ec2", "delete_launch_template", LaunchTemplateName=change.name)

    def _group_settings(self, group: AutoScalingGroup) -> dict[str, Any]:
        return {
            "LaunchTemplate": {"LaunchTemplateName": group.launch_template, "Version": "$Default"},
            "MaxSize": group.max_size,
            "VPCZoneIdentifier": ",".join(group.subnet_ids),
        }

    def _create_AutoScalingGroup(self, change: Change) -> None:
        group = change.desired
        assert isinstance(group, AutoScalingGroup)
        self.api.call(
            "autoscaling",
            "create_auto_scaling_group",
            AutoScalingGroupName=group.name,
            MinSize=0,
            DesiredCapacity=0,
            Tags=[{"Key": "AmazonECSManaged", "Value": "", "PropagateAtLaunch": True}],
            **self._group_settings(group),
        )

    def _update_AutoScalingGroup(self, change: Change) -> None:
        group = change.desired
        assert isinstance(group, AutoScalingGroup)
        self.api.call(
            "autoscaling",
            "update_auto_scaling_group",
            AutoScalingGroupName=group.name,
            **self._group_settings(group),
        )

    def _delete_AutoScalingGroup(self, change: Change) -> None:
        self.api.call(
            "autoscaling",
            "delete_auto_scaling_group",
            AutoScalingGroupName=change.name,
            ForceDelete=True,
        )

    def _create_CapacityProvider(self, change: Change) -> None:
        provider = change.desired
        assert isinstance(provider, CapacityProvider)
        group = self.api.get_auto_scaling_group(provider.auto_scaling_group)
        assert group is not None, "the Auto Scaling group is created first"
        self.api.call(
            "ecs",
            "create_capacity_provider",
            name=provider.name,
            autoScalingGroupProvider={
                "autoScalingGroupArn": group["AutoScalingGroupARN"],
                "managedScaling": {"status": "ENABLED", "targetCapacity": 100},
                "managedTerminationProtection": "DISABLED",
            },
        )
        self.api.set_cluster_capacity_provider(provider.cluster, provider.name, attached=True)

    def _update_CapacityProvider(self, change: Change) -> None:
        provider = change.desired
        assert isinstance(provider, CapacityProvider)
        self.api.set_cluster_capacity_provider(provider.cluster, provider.name, attached=True)

    def _delete_CapacityProvider(self, change: Change) -> None:
        self.api.set_cluster_capacity_provider(self.ecs.cluster, change.name, attached=False)
        self.api.retrying(
            "ecs", "delete_capacity_provider", busy=_DRAINING, capacityProvider=change.name
        )

    def _create_DiscoveryService(self, change: Change) -> None:
        service = change.desired
        assert isinstance(service, DiscoveryService)
        name, namespace = service.parts
        found = self.api.find_namespace(namespace)
        assert found is not None, "the namespace is created first"
        self.api.call(
            "servicediscovery",
            "create_service",
            Name=name,
            NamespaceId=found["Id"],
            Description=f"mpfn pool {name}",
            DnsConfig={
                "RoutingPolicy": "MULTIVALUE",
                "DnsRecords": [{"Type": "A", "TTL": service.ttl_s}],
            },
            HealthCheckCustomConfig={"FailureThreshold": 1},
        )

    def _update_DiscoveryService(self, change: Change) -> None:
        service = change.desired
        assert isinstance(service, DiscoveryService)
        found = self._discovery_service(service.name)
        assert found is not None, "an update is of an observed service"
        operation = self.api.call(
            "servicediscovery",
            "update_service",
            Id=found["Id"],
            Service={"DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": service.ttl_s}]}},
        )
        self.api.wait_operation(operation["OperationId"])

    def _delete_DiscoveryService(self, change: Change) -> None:
        found = self._discovery_service(change.name)
        if found is not None:
            self.api.retrying("servicediscovery", "delete_service", busy=_DRAINING, Id=found["Id"])

    def _create_TaskDefinition(self, change: Change) -> dict[str, str]:
        """Register a revision and deregister the older ones (tasks running them go on)."""
        task = change.desired
        assert isinstance(task, TaskDefinition)
        found = self.api.call("ecs", "register_task_definition", **json.loads(task.request))
        arn = str(found["taskDefinition"]["taskDefinitionArn"])
        older = [a for a in self.api.task_definition_arns(task.name) if a != arn]
        self.api.deregister_task_definitions(older)
        return {f"task_definition.{task.name}": arn}

    _update_TaskDefinition = _create_TaskDefinition

    def _delete_TaskDefinition(self, change: Change) -> None:
        """Deregister the active revisions, then delete every revision of the family."""
        self.api.deregister_task_definitions(self.api.task_definition_arns(change.name))
        self.api.delete_task_definitions(self.api.task_definition_arns(change.name, "INACTIVE"))

    def _service_settings(self, service: EcsService) -> dict[str, Any]:
        arns = self.api.task_definition_arns(service.task_definition)
        assert arns, "the task definition is registered first"
        return {
            "taskDefinition": arns[0],
            "desiredCount": service.desired_count,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(service.subnet_ids),
                    "securityGroups": list(service.security_group_ids),
                    "assignPublicIp": "DISABLED",
                }
            },
        }

    def _create_EcsService(self, change: Change) -> dict[str, str]:
        service = change.desired
        assert isinstance(service, EcsService)
        cluster, _, pool = service.name.partition("/")
        registry = self._discovery_service(service.registry)
        assert registry is not None, "the Cloud Map service is created first"
        if service.launch == "FARGATE":
            placement: dict[str, Any] = {"launchType": "FARGATE"}
        else:
            placement = {
                "capacityProviderStrategy": [
                    {"capacityProvider": self.ecs.gpu, "weight": 1, "base": 0}
                ]
            }
        self.api.call(
            "ecs",
            "create_service",
            cluster=cluster,
            serviceName=pool,
            serviceRegistries=[{"registryArn": registry["Arn"]}],
            schedulingStrategy="REPLICA",
            **placement,
            **self._service_settings(service),
        )
        config = next((p for p in self.config.pools if p.id == pool), None)
        return {f"pool_endpoint.{pool}": self.ecs.endpoint(config)} if config else {}

    def _update_EcsService(self, change: Change) -> None:
        service = change.desired
        assert isinstance(service, EcsService)
        cluster, _, pool = service.name.partition("/")
        settings = self._service_settings(service)
        if service.scaled:
            settings.pop("desiredCount")  # keep the size the warmer or a router set
        self.api.call("ecs", "update_service", cluster=cluster, service=pool, **settings)

    def _delete_EcsService(self, change: Change) -> None:
        """Scale to 0, delete, and wait until it has drained (the cluster, the Cloud Map
        service and the capacity provider are deleted after it)."""
        cluster, _, pool = change.name.partition("/")
        if self.api.get_ecs_service(cluster, pool) is not None:
            self.api.call("ecs", "update_service", cluster=cluster, service=pool, desiredCount=0)
            self.api.call("ecs", "delete_service", cluster=cluster, service=pool, force=True)
        self.api.wait_service_gone(cluster, pool)
