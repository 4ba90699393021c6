# Emergency restore of the TFC policy, from the platform team's runbook (../shared/seeds/000
# "Terraform plan/apply fails with 403 Forbidden on Vault operations"):
#
#   export VAULT_NAMESPACE="admin"
#   vault policy read tfc-policy
#   vault policy write tfc-policy - <<EOF
#   path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
#   EOF
#
# The plan shows the live policy against the one it must be, line by line (the `vault policy
# read` step), and is a no-op when it is already right. VAULT_ADDR and VAULT_TOKEN (or
# ~/.vault-token, after `vault login -method=userpass username=<admin>`) come from the
# environment, as for the vault CLI.
#
#   opsctl plan
#   opsctl apply

variable "namespace" {
  type        = string
  default     = "admin"
  description = "namespace holding tfc-policy"
}

provider "vault" {
  namespace = var.namespace
}

# The TFC policy MUST be path "*" with full capabilities: scoped paths do not propagate to
# child namespaces in HCP Vault (ADR-005).
step "vault_policy" "tfc_policy" {
  name   = "tfc-policy"
  policy = <<-EOT
    path "*" {
      capabilities = ["create", "read", "update", "delete", "list", "sudo"]
    }
  EOT
}
