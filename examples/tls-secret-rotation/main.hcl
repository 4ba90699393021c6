# Force the rotation of the ingress TLS certificate, from the platform runbook
# (../shared/seeds/000 "TLS certificate"):
#
#   # Delete the TLS secret — VSO will recreate it
#   kubectl delete secret netlix-tls-cert -n consul
#   # Verify new cert was issued
#   kubectl get secret netlix-tls-cert -n consul ...
#
# One step: delete the Secret (conditional on the uid the plan read) and wait until the
# Vault Secrets Operator has issued a new one (same name, a different uid). The deleted uid is
# journaled before the delete, so `opsctl apply --resume` after a timeout only waits and never
# deletes the new certificate.
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
  default = "consul"
}

variable "secret" {
  type    = string
  default = "netlix-tls-cert"
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

step "kubernetes_delete" "tls_cert" {
  api_version       = "v1"
  kind              = "Secret"
  namespace         = var.namespace
  name              = var.secret
  wait_for_recreate = true
  timeout           = "5m"
}

output "new_uid" {
  value = step.kubernetes_delete.tls_cert.uid
}
