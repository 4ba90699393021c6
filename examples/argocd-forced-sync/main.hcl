# Argo CD forced sync of netlix-app, from the platform team's runbook (../shared/seeds/000,
# "ArgoCD sync stuck" / troubleshooting):
#
#   kubectl get application netlix-app -n argocd -o jsonpath='{.status.sync.status}'
#   kubectl patch application netlix-app -n argocd --type merge \
#     -p '{"operation":{"initiatedBy":{"username":"admin"},"sync":{"revision":"HEAD"}}}'
#
# Setting the Application's `operation` asks the Argo CD application controller to sync it
# now. The plan is the server's dry run of the patch: it shows the `operation` fields that the
# patch sets (nothing when the same operation is already pending).
#
#   opsctl plan
#   opsctl apply

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "namespace" {
  type    = string
  default = "argocd"
}

variable "application" {
  type    = string
  default = "netlix-app"
}

variable "revision" {
  type        = string
  default     = "HEAD"
  description = "the Git revision to sync to"
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

step "kubernetes_patch" "force_sync" {
  api_version = "argoproj.io/v1alpha1"
  kind        = "Application"
  namespace   = var.namespace
  name        = var.application
  type        = "merge"
  patch = {
    operation = {
      initiatedBy = { username = "admin" }
      sync        = { revision = var.revision }
    }
  }
}
