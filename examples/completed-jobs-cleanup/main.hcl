# Clean up completed Jobs across every namespace (kubectl get jobs -A, then
# kubectl delete job NAME -n NS --cascade=background for each one whose status.succeeded is 1).
#
# The data source lists every Job when the plan is made; the plan shows one delete per completed
# Job with the Pods that cascade from it. A Job still running, or failed, is left alone.
#
#   opsctl plan
#   opsctl apply

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "label_selector" {
  type        = string
  default     = null
  description = "only Jobs with these labels (kubectl -l), e.g. app=smoke-test"
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

data "kubernetes_objects" "jobs" {
  api_version    = "batch/v1"
  kind           = "Job"
  all_namespaces = true
  label_selector = var.label_selector
}

step "kubernetes_delete" "completed" {
  for_each = {
    for j in data.kubernetes_objects.jobs.items :
    "${j.metadata.namespace}/${j.metadata.name}" => j
    if lookup(lookup(j, "status", {}), "succeeded", 0) == 1
  }
  api_version        = "batch/v1"
  kind               = "Job"
  namespace          = each.value.metadata.namespace
  name               = each.value.metadata.name
  propagation_policy = "Background"
  timeout            = "2m"
}
