# P0 incident, resolution actions for myapp-backend, from the platform team's runbook
# (../shared/seeds/003 "Incident Response" -> "Resolution Actions"):
#
#   kubectl scale deployment myapp-backend -n prod --replicas=10
#   kubectl rollout restart deployment/myapp-backend -n prod
#
# Scale up first (and wait until the new replicas are ready), then restart every pod of the
# scaled-up Deployment and wait for the rollout as `kubectl rollout status` would.
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
  default = "prod"
}

variable "deployment" {
  type    = string
  default = "myapp-backend"
}

variable "replicas" {
  type        = number
  default     = 10
  description = "replicas to scale up to"
}

provider "kubernetes" {
  config_path = var.kubeconfig
  namespace   = var.namespace
}

# 1. Scale up if resource exhaustion.
step "kubernetes_scale" "scale_up" {
  kind     = "Deployment"
  name     = var.deployment
  replicas = var.replicas
  timeout  = "10m"
}

# 2. Restart the pods (the restartedAt value is chosen, and journaled, when the step starts).
step "kubernetes_rollout_restart" "restart" {
  kind       = "Deployment"
  name       = var.deployment
  timeout    = "15m"
  depends_on = [step.kubernetes_scale.scale_up]
}
