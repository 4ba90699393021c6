# Snapshot before maintenance, then export it to S3, from the platform team's runbook
# (../shared/seeds/002, "Manual Backup Procedure"):
#
#   aws rds create-db-snapshot --db-instance-identifier platform-postgres-prod \
#     --db-snapshot-identifier platform-postgres-manual-$(date +%Y%m%d-%H%M%S)
#   aws rds describe-db-snapshots --db-instance-identifier platform-postgres-prod --snapshot-type manual
#   aws rds start-export-task --export-task-identifier postgres-export-$(date +%Y%m%d-%H%M%S) \
#     --source-arn arn:aws:rds:us-west-2:123456789012:snapshot:platform-postgres-manual-... \
#     --s3-bucket-name platform-backups-prod --s3-prefix database-exports/ \
#     --iam-role-arn arn:aws:iam::123456789012:role/rds-s3-export-role
#
#   opsctl plan  --var date=$(date -u +%Y%m%d-%H%M%S)
#   opsctl apply --var date=...

variable "date" {
  type        = string
  description = "timestamp used in the snapshot and export task names, e.g. 20261121-2200"
}

variable "db_instance" {
  type    = string
  default = "platform-postgres-prod"
}

variable "kms_key_id" {
  type        = string
  default     = "alias/platform-backups"
  description = "KMS key that encrypts the exported data (StartExportTask requires one)"
}

provider "aws" {
  region = "us-west-2"
}

# Steps 1 and 2: the snapshot, waited for until `available` (what describe-db-snapshots
# verified by hand), with the instance's tags copied onto it.
step "rds_snapshot" "before_maintenance" {
  db_instance = var.db_instance
  identifier  = "platform-postgres-manual-${var.date}"
  copy_tags   = true
  tags = {
    reason = "pre-maintenance"
  }
}

# Step 3: export it to S3 for the cross-region backup and wait until the task is COMPLETE.
step "rds_snapshot_export" "to_s3" {
  identifier   = "postgres-export-${var.date}"
  snapshot     = step.rds_snapshot.before_maintenance.identifier
  s3_bucket    = "platform-backups-prod"
  s3_prefix    = "database-exports/"
  iam_role_arn = "arn:aws:iam::123456789012:role/rds-s3-export-role"
  kms_key_id   = var.kms_key_id
}

# The manual snapshots of the instance, newest first.
data "rds_snapshots" "manual" {
  db_instance   = var.db_instance
  snapshot_type = "manual"
}

output "snapshot_arn" {
  value = step.rds_snapshot.before_maintenance.arn
}

output "export_status" {
  value = step.rds_snapshot_export.to_s3.status
}

output "manual_snapshots_before" {
  value = data.rds_snapshots.manual.count
}
