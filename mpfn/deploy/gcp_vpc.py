"""VPC egress of the Cloud Run router service and warmer job (`deploy.gcp.vpc`).

The setting is compared as sorted (setting, value) pairs: `egress` (`private-ranges-only`
or `all-traffic`) and either `network` (+ `subnetwork`) for Direct VPC egress or
`connector` (a full resource path) for a Serverless VPC Access connector. This module
turns the config into those pairs, the pairs into Cloud Run v2's `VpcAccess` message (a
template's `vpcAccess`), and a read-back message into pairs again. No I/O.
"""

from __future__ import annotations

from typing import Any

from mpfn.deploy.gcp_api import sdk
from mpfn.deploy.gcp_resources import VpcAccess
from mpfn.deploy.spec import GcpVpcConfig

EGRESS = {"private-ranges-only": "PRIVATE_RANGES_ONLY", "all-traffic": "ALL_TRAFFIC"}


def desired(vpc: GcpVpcConfig | None, project: str, region: str) -> VpcAccess:
    """The configured access; a connector's short name becomes its path in the
    deployment's project and region (the form Cloud Run stores)."""
    if vpc is None:
        return ()
    pairs: dict[str, str] = {"egress": vpc.egress}
    if vpc.connector:
        connector = vpc.connector
        if "/" not in connector:
            connector = f"projects/{project}/locations/{region}/connectors/{connector}"
        pairs["connector"] = connector
    else:
        pairs["network"] = vpc.network or ""
        if vpc.subnetwork:
            pairs["subnetwork"] = vpc.subnetwork
    return tuple(sorted(pairs.items()))


def message(access: VpcAccess) -> Any:
    """A `run_v2.VpcAccess` for a template, or None (no VPC egress)."""
    if not access:
        return None
    run_v2 = sdk("google.cloud.run_v2")
    pairs = dict(access)
    egress = run_v2.VpcAccess.VpcEgress[EGRESS[pairs["egress"]]]
    if "connector" in pairs:
        return run_v2.VpcAccess(connector=pairs["connector"], egress=egress)
    interface = run_v2.VpcAccess.NetworkInterface(
        network=pairs["network"], subnetwork=pairs.get("subnetwork", "")
    )
    return run_v2.VpcAccess(network_interfaces=[interface], egress=egress)


def observed(found: Any) -> VpcAccess:
    """The pairs of a template's read-back `vpc_access` (unset egress: Cloud Run's
    default, private ranges only)."""
    if found is None or not (found.connector or found.network_interfaces):
        return ()
    names = {v: k for k, v in EGRESS.items()}
    pairs = {"egress": names.get(found.egress.name, "private-ranges-only")}
    if found.connector:
        pairs["connector"] = found.connector
    else:
        interface = found.network_interfaces[0]
        pairs["network"] = interface.network
        if interface.subnetwork:
            pairs["subnetwork"] = interface.subnetwork
    return tuple(sorted(pairs.items()))
