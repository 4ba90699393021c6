# Node maintenance (seed runbook 002): cordon, drain, run the maintenance, uncordon.
#
#   module "maintenance" {
#     source   = "../../modules/node-maintenance"
#     for_each = toset(["node-a", "node-b"])
#     node     = each.key
#   }

variable "node" {
  type        = string
  description = "the node to take out of service"
}

variable "maintenance" {
  type        = string
  default     = "true"
  description = "command run while the node is drained (patching, reboot, AMI update, ...)"
}

variable "keep_cordoned" {
  type        = bool
  default     = false
  description = "leave the node unschedulable afterwards"
}

variable "drain_timeout" {
  type    = string
  default = "15m"
}

step "kubernetes_cordon" "this" {
  node = var.node
}

step "kubernetes_drain" "this" {
  node                 = var.node
  ignore_daemonsets    = true
  delete_emptydir_data = true
  timeout              = var.drain_timeout
  depends_on           = [step.kubernetes_cordon.this]
}

step "exec" "maintenance" {
  command    = var.maintenance
  target     = "node/${var.node}/maintenance"
  depends_on = [step.kubernetes_drain.this]
}

step "kubernetes_uncordon" "this" {
  count      = var.keep_cordoned ? 0 : 1
  node       = var.node
  depends_on = [step.exec.maintenance]
}

output "node" {
  value = var.node
}

output "evicted" {
  value = step.kubernetes_drain.this.evicted
}
