# Node maintenance, from the platform team's runbook (../shared/seeds/002):
#
#   "Emergency maintenance"            kubectl cordon <problematic-node>
#                                      kubectl drain <problematic-node> --ignore-daemonsets --delete-emptydir-data
#   "Weekly maintenance" (afterwards)  kubectl uncordon <node>   (the node back in service)
#
# opsctl plans the drain against the live cluster: every pod it will evict (namespace/name and
# owner), the PodDisruptionBudgets blocking an eviction right now, and the pods drain refuses.
#
#   opsctl plan  --var node=ip-10-0-1-5.us-west-2.compute.internal
#   opsctl apply --var node=ip-10-0-1-5.us-west-2.compute.internal

variable "node" {
  type        = string
  description = "the node to take out of service"
}

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "maintenance" {
  type        = string
  default     = "echo maintenance window: node is drained"
  description = "command run while the node is drained (patching, reboot, AMI update, ...)"
}

variable "keep_cordoned" {
  type        = bool
  default     = false
  description = "leave the node unschedulable after the maintenance (an emergency with no fix yet)"
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

# 1. No new pods on the node.
step "kubernetes_cordon" "node" {
  node = var.node
}

# 2. Move its workloads away, within their PodDisruptionBudgets; DaemonSet pods stay, emptyDir
#    scratch data is lost (as the runbook's flags say).
step "kubernetes_drain" "node" {
  node                 = var.node
  ignore_daemonsets    = true
  delete_emptydir_data = true
  timeout              = "15m"
  depends_on           = [step.kubernetes_cordon.node]
}

# 3. The maintenance itself.
step "exec" "maintenance" {
  command    = var.maintenance
  depends_on = [step.kubernetes_drain.node]
}

# 4. Back in service.
step "kubernetes_uncordon" "node" {
  count      = var.keep_cordoned ? 0 : 1
  node       = var.node
  depends_on = [step.exec.maintenance]
}

output "evicted" {
  value = step.kubernetes_drain.node.evicted
}
