# Database credential rotation (seed runbook 002, "vault-db-credential-rotation"): revoke every
# lease of a Vault database role (the users it made are dropped), and optionally rotate the
# root credentials Vault connects with.

variable "mount" {
  type        = string
  default     = "database"
  description = "path of the database secrets engine"
}

variable "role" {
  type = string
}

variable "connection" {
  type        = string
  default     = null
  description = "database connection whose root credentials to rotate (none: leave them)"
}

step "vault_lease_revoke" "this" {
  prefix  = "${var.mount}/creds/${var.role}"
  timeout = "5m"
}

step "vault_database_rotate_root" "this" {
  count      = var.connection == null ? 0 : 1
  mount      = var.mount
  connection = var.connection
  depends_on = [step.vault_lease_revoke.this]
}

output "revoked" {
  value = step.vault_lease_revoke.this.revoked
}
