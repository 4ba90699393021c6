"""EKS additions to the moto test server: the version-update operations moto lacks and
delayed status transitions for clusters and nodegroups.

Operations (shapes as the EKS API reference documents them):

- ``UpdateClusterVersion`` (POST /clusters/{name}/updates): an ``update`` of type
  ``VersionUpdate``, status ``InProgress``; the cluster is ``UPDATING`` for the held
  seconds (behaviour kind ``cluster``, id = cluster name), then ``ACTIVE`` at the new
  version and the update ``Successful`` -- or, with an injected ``fail``, the update
  ``Failed`` with its ``errors`` and the cluster ``ACTIVE`` at the old version.
  EKS's validation: ``InvalidParameterException`` for a jump of more than one minor
  version, a downgrade or the same version; ``ResourceInUseException`` while an update is
  in progress.
- ``UpdateNodegroupVersion`` (POST /clusters/{name}/node-groups/{ng}/update-version):
  ``version`` (default: the cluster's), ``releaseVersion`` (default: the newest release
  for the version, ``<version>.0-20240101``), ``force``. The nodegroup is ``UPDATING``
  (behaviour kind ``nodegroup``, id ``cluster/nodegroup`` or ``nodegroup``), then ``ACTIVE``
  with the new version and release. Refuses a version newer than the cluster's or a
  downgrade (``InvalidParameterException``), an update in progress (``ResourceInUseException``).
- ``DescribeUpdate`` (GET /clusters/{name}/updates/{updateId}[?nodegroupName=]) and
  ``ListUpdates`` (GET /clusters/{name}/updates[?nodegroupName=]) over those updates and
  the ``ConfigUpdate``s of ``UpdateNodegroupConfig``.
- ``UpdateNodegroupConfig`` (moto's): its update is recorded and, when a hold is
  configured, answered ``InProgress`` with the nodegroup ``UPDATING`` for the hold
  (moto applies the new config at once); refused with ``ResourceInUseException`` while the
  nodegroup has an update in progress.
"""

import time
import uuid
from typing import Optional

from ext import Ext, Req, json_response

PLATFORM_VERSION = "eks.1"


def release_for(version: str) -> str:
    """The newest AMI release version of a Kubernetes version, as this server knows it."""
    return f"{version}.0-20240101"


def parse_version(v: str):
    try:
        major, minor = str(v).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


class Eks:
    def __init__(self, ext: Ext):
        self.ext = ext
        # (account, region, cluster) -> [update dict]; update["_nodegroup"]: name or None
        self.updates: dict[tuple, list[dict]] = {}

    def reset(self):
        self.updates.clear()

    # ---- helpers ------------------------------------------------------------------------

    def backend(self, req: Req):
        from moto.eks.models import eks_backends

        return eks_backends[req.account][req.region]

    def not_found(self, req, message, **extra):
        return self.ext.error(req, "ResourceNotFoundException", message, 404, extra)

    def invalid(self, req, message, **extra):
        return self.ext.error(req, "InvalidParameterException", message, 400, extra)

    def in_use(self, req, message, **extra):
        return self.ext.error(req, "ResourceInUseException", message, 409, extra)

    def cluster(self, req: Req):
        name = req.params.get("name", "")
        return name, self.backend(req).clusters.get(name)

    def cluster_missing(self, req, name):
        return self.not_found(req, f"No cluster found for name: {name}.", clusterName=name)

    def list_for(self, req: Req, cluster: str) -> list:
        return self.updates.setdefault((req.account, req.region, cluster), [])

    def in_progress(self, req: Req, cluster: str, nodegroup: Optional[str]) -> Optional[dict]:
        for u in self.list_for(req, cluster):
            if u["_nodegroup"] == nodegroup and u["status"] == "InProgress":
                return u
        return None

    @staticmethod
    def public(update: dict) -> dict:
        return {k: v for k, v in update.items() if not k.startswith("_")}

    def new_update(self, req, cluster, nodegroup, type_, params) -> dict:
        u = {
            "id": str(uuid.uuid4()),
            "status": "InProgress",
            "type": type_,
            "params": params,
            "createdAt": time.time(),
            "errors": [],
            "_nodegroup": nodegroup,
        }
        self.list_for(req, cluster).append(u)
        return u

    @staticmethod
    def failed(update: dict, fail: dict, resource: str):
        update["status"] = fail.get("status", "Failed")
        update["errors"] = fail.get("errors") or [
            {
                "errorCode": "Other",
                "errorMessage": "injected failure",
                "resourceIds": [resource],
            }
        ]

    # ---- operations ---------------------------------------------------------------------

    def update_cluster_version(self, req: Req):
        name, cluster = self.cluster(req)
        if cluster is None:
            return self.cluster_missing(req, name)
        target = str(req.json().get("version", ""))
        if self.in_progress(req, name, None) or cluster.status != "ACTIVE":
            return self.in_use(
                req,
                f"Cluster {name} has an update in progress or is not ACTIVE (status {cluster.status})",
                clusterName=name,
            )
        cur, new = parse_version(cluster.version), parse_version(target)
        if new is None:
            return self.invalid(req, f"Invalid Kubernetes version: {target!r}", clusterName=name)
        if cur is None or new[0] != cur[0] or new[1] - cur[1] != 1:
            return self.invalid(
                req,
                f"Unsupported Kubernetes minor version update from {cluster.version} to {target}",
                clusterName=name,
            )
        update = self.new_update(
            req,
            name,
            None,
            "VersionUpdate",
            [{"type": "Version", "value": target}, {"type": "PlatformVersion", "value": PLATFORM_VERSION}],
        )

        def enter(status):
            cluster.status = status

        def finish(fail):
            if fail:
                self.failed(update, fail, name)
                cluster.status = fail.get("resource_status", "ACTIVE")
            else:
                cluster.version = target
                cluster.platformVersion = PLATFORM_VERSION
                cluster.status = "ACTIVE"
                update["status"] = "Successful"

        answer = json_response(200, {"update": self.public(update)})
        self.ext.start("eks", "cluster", name, [("UPDATING", 0.0)], enter, finish)
        return answer

    def nodegroup(self, req: Req):
        name, cluster = self.cluster(req)
        ng_name = req.params.get("nodegroupName", "")
        ng = cluster.nodegroups.get(ng_name) if cluster is not None else None
        return name, cluster, ng_name, ng

    def nodegroup_missing(self, req, name, cluster, ng_name):
        if cluster is None:
            return self.cluster_missing(req, name)
        return self.not_found(
            req,
            f"No node group found for name: {ng_name}.",
            clusterName=name,
            nodegroupName=ng_name,
        )

    def update_nodegroup_version(self, req: Req):
        name, cluster, ng_name, ng = self.nodegroup(req)
        if ng is None:
            return self.nodegroup_missing(req, name, cluster, ng_name)
        body = req.json()
        target = str(body.get("version") or cluster.version)
        release = str(body.get("releaseVersion") or release_for(target))
        if self.in_progress(req, name, ng_name) or ng.status != "ACTIVE":
            return self.in_use(
                req,
                f"Nodegroup {ng_name} has an update in progress or is not ACTIVE (status {ng.status})",
                clusterName=name,
                nodegroupName=ng_name,
            )
        cur, new, cl = parse_version(ng.version), parse_version(target), parse_version(cluster.version)
        if new is None:
            return self.invalid(req, f"Invalid Kubernetes version: {target!r}", nodegroupName=ng_name)
        if cl is not None and new > cl:
            return self.invalid(
                req,
                f"Requested Kubernetes version {target} is newer than the cluster's version {cluster.version}",
                clusterName=name,
                nodegroupName=ng_name,
            )
        if cur is not None and new < cur:
            return self.invalid(
                req,
                f"Requested Kubernetes version {target} is older than the nodegroup's version {ng.version}",
                clusterName=name,
                nodegroupName=ng_name,
            )
        if target == ng.version and release == ng.release_version:
            return self.invalid(
                req,
                f"Nodegroup {ng_name} is already at version {target} with release version {release}",
                clusterName=name,
                nodegroupName=ng_name,
            )
        update = self.new_update(
            req,
            name,
            ng_name,
            "VersionUpdate",
            [{"type": "Version", "value": target}, {"type": "ReleaseVersion", "value": release}],
        )

        def enter(status):
            ng.status = status

        def finish(fail):
            if fail:
                self.failed(update, fail, ng_name)
                ng.status = fail.get("resource_status", "ACTIVE")
            else:
                ng.version = target
                ng.release_version = release
                ng.status = "ACTIVE"
                update["status"] = "Successful"

        answer = json_response(200, {"update": self.public(update)})
        self.ext.start(
            "eks", "nodegroup", f"{name}/{ng_name}", [("UPDATING", 0.0)], enter, finish, ids=(ng_name,)
        )
        return answer

    def describe_update(self, req: Req):
        name, cluster = self.cluster(req)
        if cluster is None:
            return self.cluster_missing(req, name)
        uid = req.params.get("updateId", "")
        ng = req.arg("nodegroupName")
        for u in self.list_for(req, name):
            if u["id"] == uid and (ng is None or u["_nodegroup"] == ng):
                return json_response(200, {"update": self.public(u)})
        return self.not_found(req, f"No update found for ID: {uid}", clusterName=name, updateId=uid)

    def list_updates(self, req: Req):
        name, cluster = self.cluster(req)
        if cluster is None:
            return self.cluster_missing(req, name)
        ng = req.arg("nodegroupName")
        if ng is not None and ng not in cluster.nodegroups:
            return self.not_found(req, f"No node group found for name: {ng}.", clusterName=name, nodegroupName=ng)
        ids = [u["id"] for u in self.list_for(req, name) if u["_nodegroup"] == ng]
        start = int(req.arg("nextToken") or 0)
        size = int(req.arg("maxResults") or 100)
        page = ids[start : start + size]
        nxt = str(start + size) if start + size < len(ids) else None
        doc = {"updateIds": page}
        if nxt:
            doc["nextToken"] = nxt
        return json_response(200, doc)

    def config_in_use(self, req: Req):
        name, cluster, ng_name, ng = self.nodegroup(req)
        if ng is not None and (self.in_progress(req, name, ng_name) or ng.status != "ACTIVE"):
            return self.in_use(
                req,
                f"Nodegroup {ng_name} has an update in progress or is not ACTIVE (status {ng.status})",
                clusterName=name,
                nodegroupName=ng_name,
            )
        return None

    def config_update(self, req: Req, status: int, body: bytes) -> Optional[bytes]:
        """Records UpdateNodegroupConfig's update and holds the nodegroup UPDATING."""
        import json

        if status != 200:
            return None
        name, cluster, ng_name, ng = self.nodegroup(req)
        doc = json.loads(body or b"{}")
        moto_update = doc.get("update") or {}
        if ng is None or not moto_update.get("id"):
            return None
        update = {
            "id": moto_update["id"],
            "status": "InProgress",
            "type": moto_update.get("type", "ConfigUpdate"),
            "params": moto_update.get("params", []),
            "createdAt": time.time(),
            "errors": [],
            "_nodegroup": ng_name,
        }
        self.list_for(req, name).append(update)

        def enter(s):
            ng.status = s

        def finish(fail):
            if fail:
                self.failed(update, fail, ng_name)
                ng.status = fail.get("resource_status", "ACTIVE")
            else:
                ng.status = "ACTIVE"
                update["status"] = "Successful"

        answer = json.dumps({"update": self.public(update)}).encode()
        self.ext.start(
            "eks", "nodegroup", f"{name}/{ng_name}", [("UPDATING", 0.0)], enter, finish, ids=(ng_name,)
        )
        return answer


def install(ext: Ext):
    """Registers the EKS operations and hooks on ``ext``."""
    eks = Eks(ext)
    ext.on_reset(eks.reset)
    ext.before("eks", "UpdateClusterVersion", eks.update_cluster_version)
    ext.before("eks", "UpdateNodegroupVersion", eks.update_nodegroup_version)
    ext.before("eks", "DescribeUpdate", eks.describe_update)
    ext.before("eks", "ListUpdates", eks.list_updates)
    ext.before("eks", "UpdateNodegroupConfig", eks.config_in_use)
    ext.after("eks", "UpdateNodegroupConfig", eks.config_update)
