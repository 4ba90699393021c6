# Weekly maintenance of platform-prod, from the platform team's runbook
# (../shared/seeds/002 "Weekly Maintenance Tasks": every Sunday 02:00-06:00 UTC).
#
#   Pre-maintenance:   verify backups (check), API server healthy (http_check),
#                      scale down non-essential services
#   Maintenance:       update the general nodegroup's AMI (after an approval),
#                      rotate the gateway certificate, clean up completed Jobs
#   Post-maintenance:  scale back up, smoke test (API server /readyz), checks
#
#   opsctl plan
#   opsctl apply --approve production      # in CI; on a terminal opsctl asks
#
# Outside the Sunday window apply refuses to start (plan says when the next window opens);
# if the window closes mid-run no new step starts, and `opsctl apply --resume` in the next
# window continues. Not covered by a step type yet: notifying stakeholders, silencing
# alerts (AlertManager), `helm upgrade`, `docker system prune`; run those as `exec` steps.

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "cluster" {
  type    = string
  default = "platform-prod"
}

variable "release_version" {
  type        = string
  default     = null
  description = "the AMI release to roll the general nodegroup to (default: the latest for its version)"
}

variable "api_server" {
  type        = string
  description = "the Kubernetes API server URL, for the /readyz smoke test"
}

variable "api_ca_cert" {
  type        = string
  description = "PEM file of the API server's CA"
}

variable "api_token" {
  type        = string
  sensitive   = true
  description = "a bearer token allowed to read /readyz"
}

variable "services_namespace" {
  type    = string
  default = "workers"
}

variable "non_essential" {
  type    = string
  default = "non-essential-service"
}

variable "replicas" {
  type    = number
  default = 3
}

variable "certificate" {
  type        = object({ namespace = string, name = string })
  default     = { namespace = "platform", name = "api-tls" }
  description = "the TLS Secret the certificate operator re-issues when deleted"
}

variable "batch_namespace" {
  type    = string
  default = "batch"
}

variable "backup_max_age_hours" {
  type    = number
  default = 26
}

window {
  days      = ["sun"]
  start     = "02:00"
  duration  = "4h"
  time_zone = "UTC"
}

provider "aws" {}

provider "kubernetes" {
  config_path = var.kubeconfig
}

data "kubernetes_nodes" "all" {}

data "rds_snapshots" "backups" {
  db_instance = "platform-postgres-prod"
}

data "kubernetes_objects" "batch_jobs" {
  api_version = "batch/v1"
  kind        = "Job"
  namespace   = var.batch_namespace
}

# --- Pre-maintenance ---------------------------------------------------------------------

locals {
  # Timestamps as comparable numbers (YYYYMMDDhhmmss).
  newest_backup_at = data.rds_snapshots.backups.count > 0 ? parseint(formatdate("YYYYMMDDhhmmss", data.rds_snapshots.backups.items[0].snapshot_create_time), 10) : 0
  backup_deadline  = parseint(formatdate("YYYYMMDDhhmmss", timeadd(timestamp(), "-${var.backup_max_age_hours}h")), 10)
}

check "backups_fresh" {
  assert {
    condition     = local.newest_backup_at > local.backup_deadline
    error_message = "no RDS snapshot of platform-postgres-prod newer than ${var.backup_max_age_hours} h"
  }
}

check "nodes_ready" {
  assert {
    condition     = alltrue([for n in data.kubernetes_nodes.all.items : n.ready])
    error_message = "not every node is Ready"
  }
}

step "http_check" "api_healthy_before" {
  url           = "${var.api_server}/readyz"
  ca_cert       = var.api_ca_cert
  headers       = { Authorization = "Bearer ${var.api_token}" }
  body_contains = "ok"
  timeout       = "2m"
}

step "kubernetes_scale" "non_essential_down" {
  kind       = "Deployment"
  namespace  = var.services_namespace
  name       = var.non_essential
  replicas   = 0
  timeout    = "5m"
  depends_on = [step.http_check.api_healthy_before]
}

# --- Maintenance -------------------------------------------------------------------------

step "approval" "production" {
  message    = "Update the AMI of nodegroup general on ${var.cluster}?"
  depends_on = [step.kubernetes_scale.non_essential_down]
}

step "eks_nodegroup_version" "general" {
  cluster         = var.cluster
  nodegroup       = "general"
  release_version = var.release_version
  force           = true
  timeout         = "60m"
  depends_on      = [step.approval.production]
}

step "kubernetes_delete" "certificate" {
  api_version       = "v1"
  kind              = "Secret"
  namespace         = var.certificate.namespace
  name              = var.certificate.name
  wait_for_recreate = true
  timeout           = "5m"
  depends_on        = [step.kubernetes_scale.non_essential_down]
}

step "kubernetes_delete" "completed_jobs" {
  for_each = {
    for j in data.kubernetes_objects.batch_jobs.items :
    j.metadata.name => j
    if lookup(lookup(j, "status", {}), "succeeded", 0) == 1
  }
  api_version = "batch/v1"
  kind        = "Job"
  namespace   = var.batch_namespace
  name        = each.key
  timeout     = "2m"
  depends_on  = [step.kubernetes_scale.non_essential_down]
}

# --- Post-maintenance --------------------------------------------------------------------

step "kubernetes_scale" "non_essential_up" {
  kind       = "Deployment"
  namespace  = var.services_namespace
  name       = var.non_essential
  replicas   = var.replicas
  wait       = false
  timeout    = "10m"
  depends_on = [step.eks_nodegroup_version.general, step.kubernetes_delete.certificate, step.kubernetes_delete.completed_jobs]
  postcondition {
    condition     = self.replicas == var.replicas
    error_message = "${var.non_essential} did not scale back to ${var.replicas}"
  }
}

step "http_check" "smoke_readyz" {
  url           = "${var.api_server}/readyz"
  ca_cert       = var.api_ca_cert
  headers       = { Authorization = "Bearer ${var.api_token}" }
  body_contains = "ok"
  timeout       = "5m"
  depends_on    = [step.kubernetes_scale.non_essential_up]
}

output "nodegroup_release" {
  value = step.eks_nodegroup_version.general.release_version
}
