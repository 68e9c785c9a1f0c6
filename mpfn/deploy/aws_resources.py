"""The AWS shape of an mpfn deployment: resource types and least-privilege policies. Pure.

    S3 bucket (state)  <- router role: read the prefix, write only usage/
                       <- warmer role: read/write/delete under the prefix
    router Lambda (zip, Mangum) + Function URL (AWS_IAM or NONE)
    warmer Lambda (ECR image) <- EventBridge Scheduler rate(...) via the scheduler role
    CloudWatch log groups with retention, created before the functions log into them
    optional VpcConfig on both functions (subnets + security groups), with the EC2
    network-interface permissions Lambda needs for it in their roles

Policies name exact ARNs: the bucket, `<prefix>/*` keys, each function's own log group,
the one function the scheduler may invoke, and the configured subnets and security
groups. Only the two read-only EC2 Describe calls of a VPC function, which IAM supports
on no narrower resource, are granted on `*`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mpfn.deploy.models import Resource, observed_only
from mpfn.deploy.spec import AwsVpcConfig

POLICY_NAME = "mpfn"
Statement = dict[str, Any]


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class S3Bucket(Resource):
    kind: ClassVar[str] = "aws.s3.bucket"
    order: ClassVar[int] = 0
    holds_state: ClassVar[bool] = True
    immutable: ClassVar[frozenset[str]] = frozenset({"region"})
    region: str = ""
    foreign_objects: int = observed_only(0)  # objects other than deployment records


@dataclass(frozen=True)
class IamRole(Resource):
    kind: ClassVar[str] = "aws.iam.role"
    order: ClassVar[int] = 10
    trust: str = ""  # canonical JSON of the assume-role policy
    policy: str = ""  # canonical JSON of the inline policy named `mpfn`


@dataclass(frozen=True)
class LogGroup(Resource):
    kind: ClassVar[str] = "aws.logs.group"
    order: ClassVar[int] = 20
    retention_days: int = 14


@dataclass(frozen=True)
class Vpc:
    """Where a function attaches: sorted subnet and security group ids (empty: no VPC)."""

    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, subnet_ids: Iterable[str], security_group_ids: Iterable[str]) -> Vpc:
        return cls(tuple(sorted(set(subnet_ids))), tuple(sorted(set(security_group_ids))))

    @classmethod
    def configured(cls, vpc: AwsVpcConfig | None) -> Vpc:
        """`deploy.aws.vpc`, or no VPC."""
        return cls.of(vpc.subnet_ids, vpc.security_group_ids) if vpc else cls()

    def __bool__(self) -> bool:
        return bool(self.subnet_ids)

    def request(self) -> dict[str, list[str]]:
        """Lambda's `VpcConfig` (empty lists detach the function from its VPC)."""
        return {
            "SubnetIds": list(self.subnet_ids),
            "SecurityGroupIds": list(self.security_group_ids),
        }


@dataclass(frozen=True)
class ZipFunction(Resource):
    kind: ClassVar[str] = "aws.lambda.zip"
    order: ClassVar[int] = 30
    role: str = ""
    handler: str = ""
    runtime: str = ""
    architecture: str = "x86_64"
    memory_mb: int = 512
    timeout_s: int = 30
    environment: tuple[tuple[str, str], ...] = ()
    subnet_ids: tuple[str, ...] = ()  # VpcConfig, sorted (empty: outside any VPC)
    security_group_ids: tuple[str, ...] = ()
    code_sha256: str = ""
    code_path: str = observed_only("")


@dataclass(frozen=True)
class ImageFunction(Resource):
    kind: ClassVar[str] = "aws.lambda.image"
    order: ClassVar[int] = 30
    role: str = ""
    image_uri: str = ""
    entry_point: tuple[str, ...] = ()  # ImageConfig.EntryPoint (empty: the image's own)
    command: tuple[str, ...] = ()  # ImageConfig.Command
    memory_mb: int = 1024
    timeout_s: int = 300
    environment: tuple[tuple[str, str], ...] = ()
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class FunctionUrl(Resource):
    kind: ClassVar[str] = "aws.lambda.url"
    order: ClassVar[int] = 40
    auth: str = "AWS_IAM"
    invoke_mode: str = "BUFFERED"  # Mangum answers whole responses; none streams
    url: str = observed_only("")

    def outputs(self) -> dict[str, str]:
        return {"router_url": self.url} if self.url else {}


@dataclass(frozen=True)
class Schedule(Resource):
    kind: ClassVar[str] = "aws.scheduler.schedule"
    order: ClassVar[int] = 50
    function: str = ""
    role: str = ""
    expression: str = ""


def trust(service: str, account: str | None = None) -> str:
    statement: Statement = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account}}
    return canonical({"Version": "2012-10-17", "Statement": [statement]})


@dataclass(frozen=True)
class Scope:
    """Where a role may act: the state bucket/prefix, and its account/region."""

    bucket: str
    prefix: str
    region: str
    account: str

    def objects(self, sub: str = "") -> str:
        path = "/".join(p for p in (self.prefix, sub) if p)
        return f"arn:aws:s3:::{self.bucket}/{path}/*" if path else f"arn:aws:s3:::{self.bucket}/*"

    def list_statement(self) -> Statement:
        statement: Statement = {
            "Sid": "ListStatePrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{self.bucket}",
        }
        if self.prefix:
            statement["Condition"] = {"StringLike": {"s3:prefix": [f"{self.prefix}/*"]}}
        return statement

    def logs_statement(self, function: str) -> Statement:
        group = f"arn:aws:logs:{self.region}:{self.account}:log-group:/aws/lambda/{function}"
        return {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{group}:*",
        }

    def ec2(self, resource: str) -> str:
        return f"arn:aws:ec2:{self.region}:{self.account}:{resource}"

    def vpc_statements(self, vpc: Vpc | None) -> list[Statement]:
        """What Lambda needs to attach a function to `vpc` (none without one): create
        network interfaces only in its subnets with its security groups, manage only
        interfaces of this account and region, and the two Describe calls IAM supports
        only on `*` (the least-privilege form of AWSLambdaVPCAccessExecutionRole)."""
        if not vpc:
            return []
        interfaces = self.ec2("network-interface/*")
        return [
            {
                "Sid": "CreateVpcInterfaces",
                "Effect": "Allow",
                "Action": "ec2:CreateNetworkInterface",
                "Resource": [
                    interfaces,
                    *(self.ec2(f"subnet/{s}") for s in vpc.subnet_ids),
                    *(self.ec2(f"security-group/{g}") for g in vpc.security_group_ids),
                ],
            },
            {
                "Sid": "ManageVpcInterfaces",
                "Effect": "Allow",
                "Action": [
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "Resource": interfaces,
            },
            {
                "Sid": "DescribeVpcInterfaces",
                "Effect": "Allow",
                "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
                "Resource": "*",
            },
        ]


def scale_statements(services: Sequence[str], sid: str) -> list[dict[str, Any]]:
    """Read and set the size of exactly these ECS services (ARNs); none when empty."""
    if not services:
        return []
    actions = ["ecs:DescribeServices", "ecs:UpdateService"]
    return [{"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": sorted(services)}]


def router_policy(
    scope: Scope, function: str, vpc: Vpc | None = None, wakes: Sequence[str] = ()
) -> str:
    """Read the state; write only per-minute usage counts; log to its own group; attach
    to its VPC when it has one; wake the scaled pools' ECS services (`wakes`, ARNs)."""
    return canonical(
        {
            "Version": "2012-10-17",
            "Statement": [
                scope.list_statement(),
                {
                    "Sid": "ReadState",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": scope.objects(),
                },
                {
                    "Sid": "WriteUsage",
                    "Effect": "Allow",
                    "Action": "s3:PutObject",
                    "Resource": scope.objects("usage"),
                },
                scope.logs_statement(function),
                *scope.vpc_statements(vpc),
                *scale_statements(wakes, "WakePools"),
            ],
        }
    )


def warmer_policy(
    scope: Scope, function: str, vpc: Vpc | None = None, sizes: Sequence[str] = ()
) -> str:
    """Read and write plans, stats and forecasts under the prefix; log to its own group;
    attach to its VPC when it has one; size the scaled pools' ECS services (`sizes`)."""
    return canonical(
        {
            "Version": "2012-10-17",
            "Statement": [
                scope.list_statement(),
                {
                    "Sid": "ReadWriteState",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": scope.objects(),
                },
                scope.logs_statement(function),
                *scope.vpc_statements(vpc),
                *scale_statements(sizes, "SizePools"),
            ],
        }
    )


def scheduler_policy(function_arn: str) -> str:
    """Invoke exactly the warmer function."""
    return canonical(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "InvokeWarmer",
                    "Effect": "Allow",
                    "Action": "lambda:InvokeFunction",
                    "Resource": function_arn,
                }
            ],
        }
    )


def rate(minutes: int) -> str:
    return f"rate({minutes} minute{'s' if minutes != 1 else ''})"
