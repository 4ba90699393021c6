# EKS upgrade through the `eks-upgrade` module (seed runbooks 003/004): the control plane one
# minor version up, then every managed nodegroup.
#
#   opsctl plan  --var version=1.29
#   opsctl apply --var version=1.29

variable "cluster" {
  type    = string
  default = "platform-prod"
}

variable "version" {
  type = string
}

provider "aws" {
  region = "us-west-2"
}

module "upgrade" {
  source  = "../../modules/eks-upgrade"
  cluster = var.cluster
  version = var.version
}

output "nodegroups" {
  value = module.upgrade.nodegroups
}
