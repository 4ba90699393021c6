# Nodegroup scaling pin (seed runbook 004): pin an EKS managed nodegroup's scaling config for
# the length of a maintenance (headroom before a drain, or a pause of batch capacity).

variable "cluster" {
  type = string
}

variable "nodegroup" {
  type = string
}

variable "min_size" {
  type    = number
  default = null
}

variable "max_size" {
  type    = number
  default = null
}

variable "desired_size" {
  type = number

  validation {
    condition     = var.desired_size >= 0
    error_message = "desired_size must be 0 or more."
  }
}

data "eks_nodegroup" "this" {
  cluster   = var.cluster
  nodegroup = var.nodegroup
}

step "eks_nodegroup_scaling" "this" {
  cluster      = var.cluster
  nodegroup    = data.eks_nodegroup.this.nodegroup
  min_size     = var.min_size
  max_size     = var.max_size
  desired_size = var.desired_size
  timeout      = "30m"
}

output "desired_size_before" {
  value = data.eks_nodegroup.this.scaling_config.desired_size
}

output "desired_size" {
  value = var.desired_size
}
