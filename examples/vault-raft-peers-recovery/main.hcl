# Vault (Integrated Storage / raft) outage recovery with peers.json, for a self-hosted Vault
# StatefulSet (the Helm chart's `vault`, data on PVC `data-vault-0`), following Vault's
# documented manual recovery (developer.hashicorp.com/vault/tutorials/raft/raft-lost-quorum):
#
#   kubectl scale statefulset vault -n vault --replicas=0
#   # on the surviving node's data volume:
#   cat > /vault/data/raft/peers.json <<EOF
#   [ { "id": "<node id>", "address": "vault-0.vault-internal:8201", "non_voter": false } ]
#   EOF
#   kubectl scale statefulset vault -n vault --replicas=1
#   # then unseal vault-0 (vault operator unseal, or the vault_unseal step)
#
# The file is written by a one-off Job that mounts the surviving node's PVC (nothing else can
# reach the volume while the StatefulSet is stopped); the Job's termination message is the file
# it wrote, shown as an output. On start, Vault reads peers.json, makes it the raft
# configuration and deletes it.
#
#   opsctl plan  --var node_id=<id of vault-0, from `vault operator raft list-peers`>
#   opsctl apply --var node_id=...

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "namespace" {
  type    = string
  default = "vault"
}

variable "statefulset" {
  type    = string
  default = "vault"
}

variable "node_id" {
  type        = string
  description = "raft node id of the surviving server (vault-0), as `vault operator raft list-peers` listed it"
}

variable "image" {
  type    = string
  default = "hashicorp/vault:1.15.2"
}

provider "kubernetes" {
  config_path = var.kubeconfig
  namespace   = var.namespace
}

locals {
  survivor = "${var.statefulset}-0"
  peers = jsonencode([{
    id        = var.node_id
    address   = "${local.survivor}.${var.statefulset}-internal:8201"
    non_voter = false
  }])
}

# 1. Stop every Vault server (the raft data must not change while peers.json is written).
step "kubernetes_scale" "stop" {
  kind     = "StatefulSet"
  name     = var.statefulset
  replicas = 0
  timeout  = "10m"
}

# 2. Write raft/peers.json on the survivor's data volume.
step "kubernetes_job" "peers_json" {
  generate_name = "vault-peers-json-"
  image         = var.image
  env           = { PEERS_JSON = local.peers }
  command = ["/bin/sh", "-c", <<-SCRIPT
    set -e
    mkdir -p /vault/data/raft
    printf '%s\n' "$PEERS_JSON" > /vault/data/raft/peers.json
    cat /vault/data/raft/peers.json > /dev/termination-log
    SCRIPT
  ]
  pvc_volumes   = { data = { claim = "data-${local.survivor}", mount_path = "/vault/data" } }
  backoff_limit = 0
  delete_after  = true
  timeout       = "5m"
  depends_on    = [step.kubernetes_scale.stop]
}

# 3. Start the survivor alone; it reads peers.json on start. Its pod is not Ready until it is
#    unsealed, so the scale does not wait for readiness; the next step waits for it to run.
step "kubernetes_scale" "start" {
  kind       = "StatefulSet"
  name       = var.statefulset
  replicas   = 1
  wait       = false
  depends_on = [step.kubernetes_job.peers_json]
}

step "kubernetes_wait" "survivor_running" {
  kind       = "Pod"
  name       = local.survivor
  field      = "status.phase"
  value      = "Running"
  timeout    = "10m"
  depends_on = [step.kubernetes_scale.start]
}

output "peers_json" {
  value = step.kubernetes_job.peers_json.message
}
