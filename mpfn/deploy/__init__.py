"""`mpfn deploy`: plan -> apply -> destroy for the local, k8s, aws and gcp targets.

See `mpfn.deploy.deployer` for the pipeline in one screen. The public API is the config
loader, the target registry, the plan/apply functions and the plan model.
"""

from __future__ import annotations

from mpfn.deploy.deployer import Outcome, deploy, destroy, plan_deploy, plan_destroy
from mpfn.deploy.executor import DeployError, DisplayExecutor, Executor
from mpfn.deploy.models import Action, Change, FieldChange, Plan, Resource
from mpfn.deploy.planner import PlanError, Planner, PlanOptions
from mpfn.deploy.record import DeploymentRecord, RecordStore
from mpfn.deploy.spec import DeployConfig, DeployConfigError, load_deploy_config
from mpfn.deploy.targets import Project, Target, open_target, target_names

__all__ = [
    "Action",
    "Change",
    "DeployConfig",
    "DeployConfigError",
    "DeployError",
    "DeploymentRecord",
    "DisplayExecutor",
    "Executor",
    "FieldChange",
    "Outcome",
    "Plan",
    "PlanError",
    "PlanOptions",
    "Planner",
    "Project",
    "RecordStore",
    "Resource",
    "Target",
    "deploy",
    "destroy",
    "load_deploy_config",
    "open_target",
    "plan_deploy",
    "plan_destroy",
    "target_names",
]
