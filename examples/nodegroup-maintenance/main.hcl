# Pre-maintenance safety steps for platform-prod, from the platform team's runbook
# (../shared/seeds/002: "Create RDS snapshot" before maintenance, then
# `aws eks update-nodegroup-config --scaling-config minSize=2,maxSize=8,desiredSize=...`).
#
#   opsctl plan  --var date=$(date -u +%Y%m%d-%H%M%S)
#   opsctl apply --var date=...

variable "cluster" {
  type        = string
  default     = "platform-prod"
  description = "EKS cluster the maintenance runs on"
}

variable "date" {
  type        = string
  description = "timestamp used in the snapshot name, e.g. 20261121-2200"

  validation {
    condition     = length(var.date) >= 8
    error_message = "date must look like 20261121-2200."
  }
}

variable "general_desired_size" {
  type    = number
  default = 5
}

provider "aws" {
  region = "us-west-2"
}

data "rds_db_instance" "primary" {
  identifier = "platform-postgres-prod"
}

data "eks_nodegroup" "general" {
  cluster   = var.cluster
  nodegroup = "general"
}

locals {
  snapshot_id = "${data.rds_db_instance.primary.identifier}-manual-${var.date}"
}

# 1. Create RDS snapshot (and wait until it is available).
step "rds_snapshot" "before_maintenance" {
  db_instance = data.rds_db_instance.primary.identifier
  identifier  = local.snapshot_id
  timeout     = "60m"
  tags = {
    reason = "pre-maintenance"
    engine = data.rds_db_instance.primary.engine
  }
}

# 2. Headroom on the general nodegroup before nodes are cycled.
step "eks_nodegroup_scaling" "general_headroom" {
  cluster      = var.cluster
  nodegroup    = data.eks_nodegroup.general.nodegroup
  min_size     = 2
  max_size     = 8
  desired_size = var.general_desired_size
  depends_on   = [step.rds_snapshot.before_maintenance]
}

# 3. Pause the batch nodegroup for the window.
step "eks_nodegroup_scaling" "batch_pause" {
  cluster      = var.cluster
  nodegroup    = "batch"
  min_size     = 0
  desired_size = 0
  depends_on   = [step.rds_snapshot.before_maintenance]
}

output "snapshot_arn" {
  value = step.rds_snapshot.before_maintenance.arn
}

output "general_size_before" {
  value = data.eks_nodegroup.general.scaling_config.desired_size
}
