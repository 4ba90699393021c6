# Database credential rotation through the `db-credential-rotation` module (seed runbook
# "vault-db-credential-rotation"): revoke every lease of the application's database role, so
# that every user Vault made for it is dropped and the application reads new credentials.
#
#   VAULT_ADDR=... VAULT_TOKEN=... opsctl apply

variable "namespace" {
  type    = string
  default = null
}

variable "mount" {
  type    = string
  default = "database"
}

variable "role" {
  type    = string
  default = "netlix-app"
}

provider "vault" {
  namespace = var.namespace
}

module "rotation" {
  source = "../../modules/db-credential-rotation"
  mount  = var.mount
  role   = var.role
}

output "revoked" {
  value = module.rotation.revoked
}
