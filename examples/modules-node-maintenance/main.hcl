# Node maintenance for several nodes through the `node-maintenance` module (seed runbook 002):
# each node is cordoned, drained, maintained and uncordoned. One module instance per node:
# `module.maintenance["NODE"].step.kubernetes_drain.this`, and so on.
#
# The nodes are a variable: a module's `for_each` is decided before plan, from the values given.
#
#   opsctl plan  --var 'nodes=["ip-10-0-1-5.us-west-2.compute.internal"]'
#   opsctl apply --var 'nodes=["ip-10-0-1-5.us-west-2.compute.internal"]'

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "nodes" {
  type        = list(string)
  default     = ["ip-10-0-1-5.us-west-2.compute.internal", "ip-10-0-2-7.us-west-2.compute.internal"]
  description = "the nodes to maintain, one module instance each"
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

module "maintenance" {
  source      = "../../modules/node-maintenance"
  for_each    = toset(var.nodes)
  node        = each.key
  maintenance = "echo maintenance window: ${each.key} is drained"
}

output "evicted" {
  value = { for node, m in module.maintenance : node => m.evicted }
}
