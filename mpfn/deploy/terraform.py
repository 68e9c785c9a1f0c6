"""The AWS shape as a Terraform module (JSON syntax, `main.tf.json`), from a config. Pure.

Same resources and least-privilege policies as the `aws` target and the SAM template.
Variables carry the settings people change per environment (region, router zip, warmer
image, auth, memory, log retention) with the config's values as defaults; the warmer,
its roles and its schedule exist only when `warmer_image` is set. With `deploy.aws.vpc`
both functions get a `vpc_config` block and their role policies the network-interface
statements it takes. The module declares no
provider block beyond the required provider, so callers configure credentials and
endpoints as they like.
"""

from __future__ import annotations

import json
from typing import Any

from mpfn.deploy.aws_resources import (
    Scope,
    Vpc,
    rate,
    router_policy,
    scheduler_policy,
    warmer_policy,
)
from mpfn.deploy.packaging import HANDLER
from mpfn.deploy.spec import DeployConfig
from mpfn.images.catalog import WARMER_LAMBDA_COMMAND, WARMER_LAMBDA_ENTRYPOINT

ACCOUNT = "${data.aws_caller_identity.current.account_id}"
REGION = "${var.region}"
WARMER_COUNT = '${var.warmer_image == "" ? 0 : 1}'


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def _variables(config: DeployConfig) -> dict[str, Any]:
    return {
        "region": {"type": "string", "default": config.aws.region or "us-east-1"},
        "router_zip": {
            "type": "string",
            "default": "",
            "description": "Path of the router package (default: router.zip beside the module)",
        },
        "router_auth": {"type": "string", "default": config.aws.auth},
        "router_memory_mb": {"type": "number", "default": config.router.memory_mb},
        "warmer_image": {
            "type": "string",
            "default": config.warmer.image or "",
            "description": "ECR image URI of the warmer; empty leaves the warmer out",
        },
        "log_retention_days": {"type": "number", "default": config.aws.log_retention_days},
    }


def _vpc_config(vpc: Vpc) -> dict[str, list[str]]:
    return {"subnet_ids": list(vpc.subnet_ids), "security_group_ids": list(vpc.security_group_ids)}


def module(config: DeployConfig, bucket: str, prefix: str, runtime: str) -> dict[str, Any]:
    stem = config.prefix()
    router, warmer = f"{stem}-router", f"{stem}-warmer"
    scope = Scope(bucket, prefix, REGION, ACCOUNT)
    state = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    warmer_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{warmer}"
    env = dict(sorted({**config.router.env, "MPFN_STATE": state}.items()))
    vpc = Vpc.configured(config.aws.vpc)
    attach = {"vpc_config": _vpc_config(vpc)} if vpc else {}
    return {
        "terraform": {
            "required_version": ">= 1.3",
            "required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.0"}},
        },
        "variable": _variables(config),
        "data": {"aws_caller_identity": {"current": {}}},
        "locals": {
            "router_zip": '${var.router_zip != "" ? var.router_zip : '
            'format("%s/../router.zip", path.module)}'
        },
        "resource": {
            "aws_s3_bucket": {"state": {"bucket": bucket}},
            "aws_s3_bucket_public_access_block": {
                "state": {
                    "bucket": "${aws_s3_bucket.state.id}",
                    "block_public_acls": True,
                    "ignore_public_acls": True,
                    "block_public_policy": True,
                    "restrict_public_buckets": True,
                }
            },
            "aws_iam_role": {
                "router": {
                    "name": f"{router}-role",
                    "assume_role_policy": _trust("lambda.amazonaws.com"),
                },
                "warmer": {
                    "count": WARMER_COUNT,
                    "name": f"{warmer}-role",
                    "assume_role_policy": _trust("lambda.amazonaws.com"),
                },
                "scheduler": {
                    "count": WARMER_COUNT,
                    "name": f"{stem}-scheduler-role",
                    "assume_role_policy": _trust("scheduler.amazonaws.com"),
                },
            },
            "aws_iam_role_policy": {
                "router": {
                    "name": "mpfn",
                    "role": "${aws_iam_role.router.id}",
                    "policy": router_policy(scope, router, vpc),
                },
                "warmer": {
                    "count": WARMER_COUNT,
                    "name": "mpfn",
                    "role": "${aws_iam_role.warmer[0].id}",
                    "policy": warmer_policy(scope, warmer, vpc),
                },
                "scheduler": {
                    "count": WARMER_COUNT,
                    "name": "mpfn",
                    "role": "${aws_iam_role.scheduler[0].id}",
                    "policy": scheduler_policy(warmer_arn),
                },
            },
            "aws_cloudwatch_log_group": {
                "router": {
                    "name": f"/aws/lambda/{router}",
                    "retention_in_days": "${var.log_retention_days}",
                },
                "warmer": {
                    "count": WARMER_COUNT,
                    "name": f"/aws/lambda/{warmer}",
                    "retention_in_days": "${var.log_retention_days}",
                },
            },
            "aws_lambda_function": {
                "router": {
                    "function_name": router,
                    "filename": "${local.router_zip}",
                    "source_code_hash": "${filebase64sha256(local.router_zip)}",
                    "handler": HANDLER,
                    "runtime": runtime,
                    "architectures": [config.router.architecture],
                    "memory_size": "${var.router_memory_mb}",
                    "timeout": config.router.timeout_s,
                    "role": "${aws_iam_role.router.arn}",
                    "environment": {"variables": env},
                    **attach,
                    "depends_on": [
                        "aws_cloudwatch_log_group.router",
                        "aws_iam_role_policy.router",
                    ],
                },
                "warmer": {
                    "count": WARMER_COUNT,
                    "function_name": warmer,
                    "package_type": "Image",
                    "image_uri": "${var.warmer_image}",
                    "image_config": {
                        "entry_point": list(WARMER_LAMBDA_ENTRYPOINT),
                        "command": list(WARMER_LAMBDA_COMMAND),
                    },
                    "memory_size": config.warmer.memory_mb,
                    "timeout": config.warmer.timeout_s,
                    "role": "${aws_iam_role.warmer[0].arn}",
                    "environment": {"variables": {"MPFN_STATE": state}},
                    **attach,
                    "depends_on": [
                        "aws_cloudwatch_log_group.warmer",
                        "aws_iam_role_policy.warmer",
                    ],
                },
            },
            "aws_lambda_function_url": {
                "router": {
                    "function_name": "${aws_lambda_function.router.function_name}",
                    "authorization_type": "${var.router_auth}",
                    "invoke_mode": "BUFFERED",  # Mangum cannot stream
                }
            },
            "aws_lambda_permission": {
                "router_url_public": {
                    "count": '${var.router_auth == "NONE" ? 1 : 0}',
                    "statement_id": "FunctionURLAllowPublicAccess",
                    "action": "lambda:InvokeFunctionUrl",
                    "function_name": "${aws_lambda_function.router.function_name}",
                    "principal": "*",
                    "function_url_auth_type": "NONE",
                }
            },
            "aws_scheduler_schedule": {
                "warmer": {
                    "count": WARMER_COUNT,
                    "name": f"{warmer}-schedule",
                    "schedule_expression": rate(config.warmer.every_minutes),
                    "flexible_time_window": {"mode": "OFF"},
                    "target": {
                        "arn": "${aws_lambda_function.warmer[0].arn}",
                        "role_arn": "${aws_iam_role.scheduler[0].arn}",
                        "input": json.dumps({"source": "mpfn.scheduler"}),
                    },
                }
            },
        },
        "output": {
            "router_url": {"value": "${aws_lambda_function_url.router.function_url}"},
            "state_url": {"value": state},
        },
    }


def render(config: DeployConfig, bucket: str, prefix: str, runtime: str) -> str:
    return json.dumps(module(config, bucket, prefix, runtime), indent=2) + "\n"
