# TLS secret rotation through the `tls-secret-rotation` module (seed runbook 000): delete the
# certificate Secret and wait until its controller has issued a new one.
#
#   opsctl apply --var namespace=consul

variable "kubeconfig" {
  type    = string
  default = null
}

variable "namespace" {
  type    = string
  default = "consul"
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

module "tls" {
  source    = "../../modules/tls-secret-rotation"
  namespace = var.namespace
  secret    = "netlix-tls-cert"
}

output "new_uid" {
  value = module.tls.new_uid
}
