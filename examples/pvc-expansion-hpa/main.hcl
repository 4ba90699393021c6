# Storage and scaling headroom for fastapi-app, from the platform team's runbook
# (../shared/seeds/002, "Storage Issues" and "Resolution" option 3):
#
#   kubectl patch pvc fastapi-data -n apps -p '{"spec":{"resources":{"requests":{"storage":"20Gi"}}}}'
#   kubectl patch hpa fastapi-hpa -n apps -p '{"spec":{"maxReplicas":30}}'
#
# The claim's StorageClass must allow volume expansion and the claim must be Bound (the API
# server rejects the patch otherwise, and the plan shows its message). Both patches are planned
# by the server's dry run: the plan shows the size and maxReplicas changes only.
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
  default = "apps"
}

variable "claim" {
  type    = string
  default = "fastapi-data"
}

variable "size" {
  type        = string
  default     = "20Gi"
  description = "the claim's new storage request (it can only grow)"
}

variable "hpa" {
  type    = string
  default = "fastapi-hpa"
}

variable "max_replicas" {
  type    = number
  default = 30
}

provider "kubernetes" {
  config_path = var.kubeconfig
  namespace   = var.namespace
}

# 1. Expand the volume claim.
step "kubernetes_patch" "expand_pvc" {
  api_version = "v1"
  kind        = "PersistentVolumeClaim"
  name        = var.claim
  patch       = { spec = { resources = { requests = { storage = var.size } } } }
}

# 2. Raise the autoscaler's ceiling (autoscaling/v1 is served from 1.2 to today).
step "kubernetes_patch" "raise_max_replicas" {
  api_version = "autoscaling/v1"
  kind        = "HorizontalPodAutoscaler"
  name        = var.hpa
  patch       = { spec = { maxReplicas = var.max_replicas } }
}
