# EKS upgrade, from the platform runbooks (../shared/seeds/003 "Kubernetes upgrade" and 004
# "Control Plane Upgrade" / "Node Group Upgrade"):
#
#   aws eks update-cluster-version --name eks-prod --kubernetes-version 1.29
#   aws eks wait cluster-active --name eks-prod
#   aws eks update-nodegroup-version --cluster-name eks-prod --nodegroup-name <each nodegroup>
#
#   opsctl plan  --var version=1.29
#   opsctl apply --var version=1.29

variable "cluster" {
  type        = string
  default     = "platform-prod"
  description = "EKS cluster to upgrade"
}

variable "version" {
  type        = string
  description = "Kubernetes version to move to: one minor version above the cluster's (EKS refuses more)"
}

provider "aws" {
  region = "us-west-2"
}

data "eks_cluster" "this" {
  cluster = var.cluster
}

data "eks_nodegroups" "all" {
  cluster = var.cluster
}

# 1. The control plane, one minor version up; waits until the update is Successful and the
#    cluster ACTIVE again (EKS takes 10-25 minutes).
step "eks_cluster_version" "control_plane" {
  cluster = var.cluster
  version = var.version
  timeout = "60m"
}

# 2. Then every managed nodegroup to the control plane's new version. The version comes from
#    the control-plane step's output: known at plan time (so the plan shows each roll
#    exactly), and it orders every roll after the control plane.
step "eks_nodegroup_version" "nodes" {
  for_each  = { for ng in data.eks_nodegroups.all.items : ng.nodegroup => ng }
  cluster   = var.cluster
  nodegroup = each.key
  version   = step.eks_cluster_version.control_plane.version
  timeout   = "90m"
}

output "version_before" {
  value = data.eks_cluster.this.version
}

output "nodegroups" {
  value = data.eks_nodegroups.all.names
}
