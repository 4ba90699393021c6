# Application deployment with automatic rollback, from the platform team's runbook
# (../shared/seeds/002 "Application Deployment Runbook"):
#
#   kubectl set image deployment/fastapi-app fastapi=${ECR_REGISTRY}/fastapi-app:${IMAGE_TAG} -n apps
#   kubectl rollout status deployment/fastapi-app -n apps --timeout=600s
#   kubectl get pods -n apps -l app=fastapi-app
#   curl -s https://api.platform.company.com/health | jq .
#   # If deployment fails, rollback immediately
#   kubectl rollout undo deployment/fastapi-app -n apps
#   kubectl rollout status deployment/fastapi-app -n apps
#
# The rollback step runs only when the image update, the wait for ready pods or the smoke
# check fails; plan shows it as the failure path.
#
#   opsctl plan  --var image=123456789012.dkr.ecr.us-west-2.amazonaws.com/fastapi-app:1.4.2
#   opsctl apply --var image=...

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "namespace" {
  type    = string
  default = "apps"
}

variable "deployment" {
  type    = string
  default = "fastapi-app"
}

variable "image" {
  type        = string
  description = "the new image of container `fastapi`: ECR_REGISTRY/fastapi-app:IMAGE_TAG"
}

variable "smoke_check" {
  type        = string
  default     = "curl -fsS https://api.platform.company.com/health"
  description = "the smoke check command (exit 0 = healthy)"
}

provider "kubernetes" {
  config_path = var.kubeconfig
  namespace   = var.namespace
}

# 1. Update the image and wait for the rollout (`kubectl rollout status --timeout=600s`).
step "kubernetes_set_image" "deploy" {
  kind     = "Deployment"
  name     = var.deployment
  images   = { fastapi = var.image }
  timeout  = "10m"
  rollback = [step.kubernetes_rollout_undo.rollback]
}

# 2. Every pod of the app Ready (`kubectl get pods -l app=fastapi-app`).
step "kubernetes_wait" "pods_ready" {
  selector   = "app=${var.deployment}"
  condition  = "Ready"
  timeout    = "5m"
  depends_on = [step.kubernetes_set_image.deploy]
  rollback   = [step.kubernetes_rollout_undo.rollback]
}

# 3. Smoke check (`curl .../health`), three tries a few seconds apart.
step "exec" "smoke" {
  command    = var.smoke_check
  timeout    = "1m"
  depends_on = [step.kubernetes_wait.pods_ready]
  rollback   = [step.kubernetes_rollout_undo.rollback]
  retry {
    attempts = 3
    initial  = "5s"
    on       = "any"
  }
}

# Rollback: only when a step above fails. `kubectl rollout undo`, then the rollout status.
# `depends_on` plans it against the state the image update predicts (and orders the two
# writers of the Deployment); a rollback step does not wait for it at apply.
step "kubernetes_rollout_undo" "rollback" {
  name       = var.deployment
  timeout    = "10m"
  depends_on = [step.kubernetes_set_image.deploy]
}
