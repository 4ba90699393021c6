# Database password rotation, from the platform team's runbook (../shared/seeds/002, "Secret
# Rotation" > "Database Password Rotation"), with the new password read from Vault KV instead
# of generated in the shell:
#
#   NEW_PASSWORD=$(openssl rand -base64 32)          # here: vault kv put secret/... password=...
#   aws rds modify-db-instance --db-instance-identifier platform-postgres-prod \
#     --master-user-password $NEW_PASSWORD --apply-immediately
#   kubectl patch secret database-credentials -n apps \
#     -p "{\"data\":{\"password\":\"$(echo -n $NEW_PASSWORD | base64)\"}}"
#   kubectl rollout restart deployment/fastapi-app -n apps
#   kubectl rollout restart deployment/express-app -n apps
#
# The password is sensitive from the moment it is read: the plan shows `(sensitive value)`,
# and neither the journal nor the output holds it. VAULT_ADDR/VAULT_TOKEN and the AWS
# credentials come from the environment, as for the vault and aws CLIs.
#
#   opsctl plan
#   opsctl apply

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "region" {
  type    = string
  default = "us-west-2"
}

variable "kv_mount" {
  type        = string
  default     = "secret"
  description = "mount of the KV version 2 secrets engine"
}

variable "kv_path" {
  type        = string
  default     = "platform/postgres-prod"
  description = "KV secret holding the new password under the key `password`"
}

variable "db_instance" {
  type    = string
  default = "platform-postgres-prod"
}

variable "namespace" {
  type    = string
  default = "apps"
}

variable "secret_name" {
  type    = string
  default = "database-credentials"
}

variable "deployments" {
  type        = list(string)
  default     = ["fastapi-app", "express-app"]
  description = "Deployments restarted to pick up the new password"
}

provider "vault" {}

provider "aws" {
  region = var.region
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

# 1. The new password (sensitive: everything derived from it is, too).
data "vault_kv" "db" {
  mount = var.kv_mount
  path  = var.kv_path
}

# 2. Update the RDS master password (RDS never returns it: this runs on every apply).
step "rds_instance" "master_password" {
  identifier           = var.db_instance
  master_user_password = data.vault_kv.db.data.password
  apply_immediately    = true
  timeout              = "30m"
}

# 3. Update the Kubernetes secret the applications read it from.
step "kubernetes_patch" "credentials" {
  api_version = "v1"
  kind        = "Secret"
  namespace   = var.namespace
  name        = var.secret_name
  type        = "merge"
  patch = {
    data = { password = base64encode(data.vault_kv.db.data.password) }
  }
  depends_on = [step.rds_instance.master_password]
}

# 4. Restart the applications and wait for their rollouts.
step "kubernetes_rollout_restart" "apps" {
  for_each   = toset(var.deployments)
  kind       = "Deployment"
  namespace  = var.namespace
  name       = each.key
  timeout    = "15m"
  depends_on = [step.kubernetes_patch.credentials]
}
