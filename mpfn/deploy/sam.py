"""The AWS shape as a SAM/CloudFormation template, rendered from a config. Pure.

The same resources as the `aws` target with the same least-privilege policies, for teams
that deploy through CloudFormation: the state bucket (retained on stack deletion), the
router function from `router.zip` with its Function URL, the warmer image function (the
image's Lambda runtime client on the warmer's handler) on an EventBridge Scheduler rate
(only when `WarmerImageUri` is set), and log groups with retention. With
`deploy.aws.vpc` both functions get its `VpcConfig` and their roles the network-interface
statements it takes. Settings from the config become parameter defaults.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from mpfn.deploy.aws_resources import (
    Scope,
    Vpc,
    rate,
    router_policy,
    scheduler_policy,
    warmer_policy,
)
from mpfn.deploy.packaging import HANDLER
from mpfn.deploy.spec import RETENTION_DAYS, DeployConfig
from mpfn.images.catalog import WARMER_LAMBDA_COMMAND, WARMER_LAMBDA_ENTRYPOINT

ACCOUNT, REGION = "${AWS::AccountId}", "${AWS::Region}"


def _sub(value: Any) -> Any:
    """Wrap every string holding a `${...}` reference in Fn::Sub, recursively."""
    if isinstance(value, str):
        return {"Fn::Sub": value} if "${" in value else value
    if isinstance(value, list):
        return [_sub(v) for v in value]
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    return value


def _trust(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def _role(trust_service: str, policy: str) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": _trust(trust_service),
            "Policies": [{"PolicyName": "mpfn", "PolicyDocument": _sub(json.loads(policy))}],
        },
    }


def _log_group(function: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Delete",
        "Properties": {
            "LogGroupName": f"/aws/lambda/{function}",
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        },
    }


def _attach(vpc: Vpc) -> dict[str, Any]:
    """A function's `VpcConfig`, a new dict per call: one shared by two functions would be
    dumped as a YAML alias, which CloudFormation refuses."""
    return {"VpcConfig": vpc.request()} if vpc else {}


def template(config: DeployConfig, bucket: str, prefix: str, runtime: str) -> dict[str, Any]:
    stem = config.prefix()
    router, warmer = f"{stem}-router", f"{stem}-warmer"
    scope = Scope(bucket, prefix, REGION, ACCOUNT)
    state = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    warmer_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{warmer}"
    env = {**config.router.env, "MPFN_STATE": state}
    vpc = Vpc.configured(config.aws.vpc)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"mpfn {stem}: router Lambda + Function URL, warmer on a schedule, "
        "state in S3",
        "Parameters": {
            "RouterAuth": {
                "Type": "String",
                "AllowedValues": ["AWS_IAM", "NONE"],
                "Default": config.aws.auth,
                "Description": "Function URL auth; NONE needs mpfn API keys in front",
            },
            "RouterMemorySize": {
                "Type": "Number",
                "MinValue": 128,
                "MaxValue": 10240,
                "Default": config.router.memory_mb,
            },
            "WarmerImageUri": {
                "Type": "String",
                "Default": config.warmer.image or "",
                "Description": "ECR image of the warmer; empty leaves the warmer out",
            },
            "LogRetentionDays": {
                "Type": "Number",
                "AllowedValues": [str(d) for d in RETENTION_DAYS],
                "Default": str(config.aws.log_retention_days),
            },
        },
        "Conditions": {"HasWarmer": {"Fn::Not": [{"Fn::Equals": [{"Ref": "WarmerImageUri"}, ""]}]}},
        "Resources": {
            "StateBucket": {
                "Type": "AWS::S3::Bucket",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "BucketName": bucket,
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    },
                },
            },
            "RouterRole": _role("lambda.amazonaws.com", router_policy(scope, router, vpc)),
            "RouterLogGroup": _log_group(router),
            "RouterFunction": {
                "Type": "AWS::Serverless::Function",
                "DependsOn": ["RouterLogGroup"],
                "Properties": {
                    "FunctionName": router,
                    "CodeUri": "router.zip",
                    "Handler": HANDLER,
                    "Runtime": runtime,
                    "Architectures": [config.router.architecture],
                    "MemorySize": {"Ref": "RouterMemorySize"},
                    "Timeout": config.router.timeout_s,
                    "Role": {"Fn::GetAtt": ["RouterRole", "Arn"]},
                    "Environment": {"Variables": dict(sorted(env.items()))},
                    "FunctionUrlConfig": {
                        "AuthType": {"Ref": "RouterAuth"},
                        "InvokeMode": "BUFFERED",  # Mangum cannot stream
                    },
                    **_attach(vpc),
                },
            },
            "WarmerRole": {
                **_role("lambda.amazonaws.com", warmer_policy(scope, warmer, vpc)),
                "Condition": "HasWarmer",
            },
            "WarmerLogGroup": {**_log_group(warmer), "Condition": "HasWarmer"},
            "WarmerFunction": {
                "Type": "AWS::Serverless::Function",
                "Condition": "HasWarmer",
                "DependsOn": ["WarmerLogGroup"],
                "Properties": {
                    "FunctionName": warmer,
                    "PackageType": "Image",
                    "ImageUri": {"Ref": "WarmerImageUri"},
                    "ImageConfig": {
                        "EntryPoint": list(WARMER_LAMBDA_ENTRYPOINT),
                        "Command": list(WARMER_LAMBDA_COMMAND),
                    },
                    "MemorySize": config.warmer.memory_mb,
                    "Timeout": config.warmer.timeout_s,
                    "Role": {"Fn::GetAtt": ["WarmerRole", "Arn"]},
                    "Environment": {"Variables": {"MPFN_STATE": state}},
                    **_attach(vpc),
                },
            },
            "SchedulerRole": {
                **_role("scheduler.amazonaws.com", scheduler_policy(warmer_arn)),
                "Condition": "HasWarmer",
            },
            "WarmerSchedule": {
                "Type": "AWS::Scheduler::Schedule",
                "Condition": "HasWarmer",
                "Properties": {
                    "Name": f"{warmer}-schedule",
                    "ScheduleExpression": rate(config.warmer.every_minutes),
                    "FlexibleTimeWindow": {"Mode": "OFF"},
                    "State": "ENABLED",
                    "Target": {
                        "Arn": {"Fn::GetAtt": ["WarmerFunction", "Arn"]},
                        "RoleArn": {"Fn::GetAtt": ["SchedulerRole", "Arn"]},
                        "Input": json.dumps({"source": "mpfn.scheduler"}),
                    },
                },
            },
        },
        "Outputs": {
            "RouterUrl": {
                "Description": "The router's HTTPS endpoint",
                "Value": {"Fn::GetAtt": ["RouterFunctionUrl", "FunctionUrl"]},
            },
            "StateUrl": {"Value": state},
        },
    }


def render(config: DeployConfig, bucket: str, prefix: str, runtime: str) -> str:
    body = yaml.safe_dump(template(config, bucket, prefix, runtime), sort_keys=False, width=100)
    return "# Generated by `mpfn deploy --export`; deploy with: sam deploy --guided\n" + body
