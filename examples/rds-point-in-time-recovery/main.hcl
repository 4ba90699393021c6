# Point-in-time recovery of the platform database, from the platform team's runbook
# (../shared/seeds/002, "Database Recovery" > "Point-in-Time Recovery"):
#
#   aws rds describe-db-instances --query 'DBInstances[0].LatestRestorableTime'
#   aws rds restore-db-instance-to-point-in-time --source-db-instance-identifier platform-postgres-prod \
#     --target-db-instance-identifier platform-postgres-recovery --restore-time ... \
#     --db-instance-class db.r6g.large --multi-az
#   aws rds wait db-instance-available --db-instance-identifier platform-postgres-recovery
#
#   opsctl plan  [--var restore_time=2026-11-21T10:30:00Z]
#   opsctl apply [--var restore_time=...]

variable "source" {
  type        = string
  default     = "platform-postgres-prod"
  description = "DB instance to recover"
}

variable "target" {
  type        = string
  default     = "platform-postgres-recovery"
  description = "the new DB instance the restore creates"
}

variable "restore_time" {
  type        = string
  default     = "latest"
  description = "`latest`, or an RFC 3339 time no later than the source's LatestRestorableTime"
}

provider "aws" {
  region = "us-west-2"
}

# Steps 1 to 3: restore into a new instance and wait until it is `available`. The plan checks
# restore_time against the source's LatestRestorableTime; a second run finds the instance
# (tagged `opsctl:restored-from`) and does nothing; a resumed run never restores twice.
step "rds_restore_point_in_time" "recovery" {
  source         = var.source
  identifier     = var.target
  restore_time   = var.restore_time
  instance_class = "db.r6g.large"
  multi_az       = true
  tags = {
    purpose = "point-in-time-recovery"
  }
}

# Steps 4 and 5 of the runbook (point the `database-credentials` secret of namespace `apps` at
# the new endpoint, then restart fastapi-app and express-app) are Kubernetes steps: add them
# here with `step.rds_restore_point_in_time.recovery.address` as the new host.

output "recovery_endpoint" {
  value = step.rds_restore_point_in_time.recovery.endpoint
}

output "recovery_address" {
  value = step.rds_restore_point_in_time.recovery.address
}

output "recovery_port" {
  value = step.rds_restore_point_in_time.recovery.port
}
