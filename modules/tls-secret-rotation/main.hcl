# TLS secret rotation (seed runbook "tls-secret-rotation"): delete the certificate Secret and
# wait until its controller (cert-manager, Consul) has made a new one.

variable "namespace" {
  type = string
}

variable "secret" {
  type = string
}

variable "wait_for_recreate" {
  type    = bool
  default = true
}

step "kubernetes_delete" "this" {
  api_version       = "v1"
  kind              = "Secret"
  namespace         = var.namespace
  name              = var.secret
  wait_for_recreate = var.wait_for_recreate
  timeout           = "5m"
}

output "new_uid" {
  value = step.kubernetes_delete.this.uid
}
