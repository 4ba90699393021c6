# Forced rotation of the application's dynamic database credentials, from the platform team's
# runbook (../shared/seeds/000 "Vault dynamic credentials rotate automatically at 67% TTL. To
# force rotation:"):
#
#   export VAULT_NAMESPACE="admin/dev"
#   vault lease revoke -prefix database/creds/netlix-app
#   # Pods will get new credentials on next VSO sync cycle
#
# The plan lists every lease that will end (id and role); revoking them drops the database
# users Vault created (named in the plan when `database_url` is given: Vault's API never names
# them). Apply waits until no lease is left under the prefix. VAULT_ADDR and
# VAULT_TOKEN come from the environment, as for the vault CLI.
#
#   opsctl plan
#   opsctl apply

variable "namespace" {
  type    = string
  default = "admin/dev"
}

variable "mount" {
  type        = string
  default     = "database"
  description = "path of the database secrets engine"
}

variable "role" {
  type    = string
  default = "netlix-app"
}

variable "database_url" {
  type        = string
  default     = null
  sensitive   = true
  description = "PostgreSQL connection string of the application's database (e.g. OPSCTL_VAR_database_url): when set, the plan names the database users that end and apply waits until they are dropped"
}

provider "vault" {
  namespace = var.namespace
}

step "vault_lease_revoke" "app_credentials" {
  prefix       = "${var.mount}/creds/${var.role}"
  database_url = var.database_url
  timeout      = "5m"
}
