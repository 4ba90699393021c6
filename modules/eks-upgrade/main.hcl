# EKS upgrade (seed runbooks 003/004): the control plane one minor version up, then every
# managed nodegroup of the cluster to the control plane's new version.

variable "cluster" {
  type = string
}

variable "version" {
  type        = string
  description = "Kubernetes version to move to: one minor version above the cluster's"
}

variable "control_plane_timeout" {
  type    = string
  default = "60m"
}

variable "nodegroup_timeout" {
  type    = string
  default = "90m"
}

data "eks_nodegroups" "all" {
  cluster = var.cluster
}

step "eks_cluster_version" "control_plane" {
  cluster = var.cluster
  version = var.version
  timeout = var.control_plane_timeout
}

step "eks_nodegroup_version" "nodes" {
  for_each  = { for ng in data.eks_nodegroups.all.items : ng.nodegroup => ng }
  cluster   = var.cluster
  nodegroup = each.key
  version   = step.eks_cluster_version.control_plane.version
  timeout   = var.nodegroup_timeout
}

output "version" {
  value = step.eks_cluster_version.control_plane.version
}

output "nodegroups" {
  value = data.eks_nodegroups.all.names
}
