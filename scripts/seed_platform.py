#!/usr/bin/env python3
"""Seed a moto server with the small platform the example procedures work on.

Usage (with the venv made by scripts/setup.sh):

    $OPSCTL_CACHE/venv/bin/python scripts/seed_platform.py --endpoint http://127.0.0.1:5599

Creates, in the given region (default us-west-2):

- EKS cluster ``platform-prod`` (Kubernetes 1.28)
- managed nodegroup ``general`` on it: m5.large, min 2 / max 8 / desired 4
- managed nodegroup ``batch`` on it: m5.large, min 0 / max 4 / desired 2
- RDS instance ``platform-postgres-prod``: postgres 15.4, db.r6g.large, 100 GB

Idempotent: objects that already exist are left untouched. Prints one line per
object and exits non-zero with a message on the first failure.
"""

import argparse
import os
import sys

ACCOUNT = "123456789012"
CLUSTER = "platform-prod"
CLUSTER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/eks"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/eks-nodes"
K8S_VERSION = "1.28"
SUBNETS = [
    "subnet-0a1b2c3d4e5f60001",
    "subnet-0a1b2c3d4e5f60002",
    "subnet-0a1b2c3d4e5f60003",
]
SECURITY_GROUPS = ["sg-0a1b2c3d4e5f60001"]
TAGS = {"team": "platform", "env": "prod"}

NODEGROUPS = [
    # name, min, max, desired
    ("general", 2, 8, 4),
    ("batch", 0, 4, 2),
]

DB_INSTANCE = "platform-postgres-prod"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5599")
    p.add_argument("--region", default="us-west-2")
    return p.parse_args(argv)


def clients(endpoint, region):
    # Dummy credentials: moto accepts anything, but botocore insists on having some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    import boto3  # imported late so --help works without boto3

    kw = dict(
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    return boto3.client("eks", **kw), boto3.client("rds", **kw)


def error_code(exc):
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def ensure_cluster(eks):
    try:
        c = eks.describe_cluster(name=CLUSTER)["cluster"]
        verb = "exists"
    except eks.exceptions.ResourceNotFoundException:
        c = eks.create_cluster(
            name=CLUSTER,
            version=K8S_VERSION,
            roleArn=CLUSTER_ROLE,
            resourcesVpcConfig={
                "subnetIds": SUBNETS,
                "securityGroupIds": SECURITY_GROUPS,
                "endpointPublicAccess": False,
                "endpointPrivateAccess": True,
            },
            tags=TAGS,
        )["cluster"]
        verb = "created"
    print(f"eks cluster {CLUSTER}: {verb} (version {c.get('version')}, status {c.get('status')})")


def ensure_nodegroup(eks, name, lo, hi, desired):
    try:
        ng = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=name)["nodegroup"]
        verb = "exists"
    except eks.exceptions.ResourceNotFoundException:
        ng = eks.create_nodegroup(
            clusterName=CLUSTER,
            nodegroupName=name,
            version=K8S_VERSION,
            scalingConfig={"minSize": lo, "maxSize": hi, "desiredSize": desired},
            subnets=SUBNETS,
            instanceTypes=["m5.large"],
            amiType="AL2_x86_64",
            capacityType="ON_DEMAND",
            diskSize=50,
            nodeRole=NODE_ROLE,
            labels={"workload": name},
            tags=TAGS,
        )["nodegroup"]
        verb = "created"
    sc = ng.get("scalingConfig", {})
    print(
        f"eks nodegroup {CLUSTER}/{name}: {verb} "
        f"(min {sc.get('minSize')}, max {sc.get('maxSize')}, desired {sc.get('desiredSize')}, "
        f"status {ng.get('status')})"
    )


def ensure_db(rds):
    try:
        db = rds.describe_db_instances(DBInstanceIdentifier=DB_INSTANCE)["DBInstances"][0]
        verb = "exists"
    except Exception as exc:  # DBInstanceNotFound / DBInstanceNotFoundFault
        if "NotFound" not in error_code(exc):
            raise
        db = rds.create_db_instance(
            DBInstanceIdentifier=DB_INSTANCE,
            Engine="postgres",
            EngineVersion="15.4",
            DBInstanceClass="db.r6g.large",
            AllocatedStorage=100,
            StorageType="gp3",
            MasterUsername="platform",
            MasterUserPassword="not-a-real-password-1",
            DBName="platform",
            MultiAZ=True,
            BackupRetentionPeriod=7,
            Tags=[{"Key": k, "Value": v} for k, v in TAGS.items()],
        )["DBInstance"]
        verb = "created"
    print(
        f"rds instance {DB_INSTANCE}: {verb} ({db.get('Engine')} {db.get('EngineVersion')}, "
        f"{db.get('DBInstanceClass')}, {db.get('AllocatedStorage')} GB, "
        f"status {db.get('DBInstanceStatus')})"
    )


def main(argv=None):
    args = parse_args(argv)
    try:
        eks, rds = clients(args.endpoint, args.region)
        ensure_cluster(eks)
        for name, lo, hi, desired in NODEGROUPS:
            ensure_nodegroup(eks, name, lo, hi, desired)
        ensure_db(rds)
    except Exception as exc:  # one clear line instead of a botocore traceback
        print(f"seed_platform.py: failed against {args.endpoint}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
