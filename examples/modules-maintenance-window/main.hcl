# A maintenance window from modules (seed runbook 004, as `examples/nodegroup-maintenance`):
# snapshot the database first, then give the general nodegroup headroom and pause batch.
#
#   opsctl plan  --var date=20261121-2200
#   opsctl apply --var date=20261121-2200

variable "cluster" {
  type    = string
  default = "platform-prod"
}

variable "date" {
  type        = string
  description = "timestamp used in the snapshot name, e.g. 20261121-2200"
}

provider "aws" {
  region = "us-west-2"
}

module "snapshot" {
  source      = "../../modules/snapshot-before-maintenance"
  db_instance = "platform-postgres-prod"
  date        = var.date
}

module "general_headroom" {
  source       = "../../modules/nodegroup-scaling-pin"
  cluster      = var.cluster
  nodegroup    = "general"
  min_size     = 2
  max_size     = 8
  desired_size = 5
  depends_on   = [module.snapshot]
}

module "batch_pause" {
  source       = "../../modules/nodegroup-scaling-pin"
  cluster      = var.cluster
  nodegroup    = "batch"
  min_size     = 0
  desired_size = 0
  depends_on   = [module.snapshot]
}

output "snapshot_arn" {
  value = module.snapshot.snapshot_arn
}

output "general_size_before" {
  value = module.general_headroom.desired_size_before
}
