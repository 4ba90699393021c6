# Database performance: scale the instance class up and add a read replica, from the platform
# team's runbook (../shared/seeds/002, "Database Performance Issues" > "Resolution Actions"):
#
#   aws rds modify-db-instance --db-instance-identifier platform-postgres-prod \
#     --db-instance-class db.r6g.xlarge --apply-immediately
#   aws rds create-db-instance-read-replica \
#     --db-instance-identifier platform-postgres-prod-read-replica \
#     --source-db-instance-identifier platform-postgres-prod --db-instance-class db.r6g.large
#
#   opsctl plan
#   opsctl apply

variable "db_instance" {
  type    = string
  default = "platform-postgres-prod"
}

variable "instance_class" {
  type    = string
  default = "db.r6g.xlarge"
}

provider "aws" {
  region = "us-west-2"
}

# Option 1: the instance class, now (an outage while the class changes; the plan says so).
step "rds_instance" "scale_up" {
  identifier        = var.db_instance
  instance_class    = var.instance_class
  apply_immediately = true
}

# Option 2: a read replica, once the primary is available again at its new size.
step "rds_read_replica" "reader" {
  source         = var.db_instance
  identifier     = "${var.db_instance}-read-replica"
  instance_class = "db.r6g.large"
  depends_on     = [step.rds_instance.scale_up]
}

output "primary_endpoint" {
  value = step.rds_instance.scale_up.endpoint
}

output "reader_endpoint" {
  value = step.rds_read_replica.reader.endpoint
}
