# Snapshot before maintenance (seed runbook 001/004): a manual RDS snapshot of the database,
# taken before anything else of the window changes.

variable "db_instance" {
  type        = string
  description = "RDS DB instance identifier"
}

variable "date" {
  type        = string
  description = "timestamp used in the snapshot name, e.g. 20261121-2200"

  validation {
    condition     = length(var.date) >= 8
    error_message = "date must look like 20261121-2200."
  }
}

variable "reason" {
  type    = string
  default = "pre-maintenance"
}

data "rds_db_instance" "this" {
  identifier = var.db_instance
}

step "rds_snapshot" "this" {
  db_instance = data.rds_db_instance.this.identifier
  identifier  = "${data.rds_db_instance.this.identifier}-manual-${var.date}"
  timeout     = "60m"
  tags = {
    reason = var.reason
    engine = data.rds_db_instance.this.engine
  }
}

output "snapshot_id" {
  value = "${var.db_instance}-manual-${var.date}"
}

output "snapshot_arn" {
  value = step.rds_snapshot.this.arn
}
