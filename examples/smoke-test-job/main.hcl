# Post-maintenance smoke test, from the platform team's runbook
# (../shared/seeds/002 "Weekly Maintenance Tasks" -> "Post-Maintenance Verification"):
#
#   kubectl apply -f k8s/tests/smoke-tests.yaml
#   kubectl wait --for=condition=complete job/smoke-tests -n tests --timeout=300s
#
# One Job runs the checks of the runbook's "Expected Results" that a pod can make (every
# health endpoint answers 200 OK); the step creates it, waits until it completes, and fails
# with the pod's termination message (what the check script writes to /dev/termination-log)
# if it fails. A Job named `smoke-tests` that already completed is not run again: delete it
# (or set `delete_after = true`) to run the checks again.
#
#   opsctl plan
#   opsctl apply

variable "kubeconfig" {
  type        = string
  default     = null
  description = "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
}

variable "namespace" {
  type    = string
  default = "tests"
}

variable "image" {
  type        = string
  default     = "curlimages/curl:8.5.0"
  description = "an image with a shell and curl"
}

variable "health_urls" {
  type = list(string)
  default = [
    "https://api.platform.company.com/health",
    "https://chat.platform.company.com/health",
  ]
}

variable "delete_after" {
  type        = bool
  default     = false
  description = "delete the Job once it succeeded (the next apply runs the checks again)"
}

provider "kubernetes" {
  config_path = var.kubeconfig
  namespace   = var.namespace
}

# Run the smoke tests; the step waits for the Job to complete (`timeout` as kubectl's 300s).
step "kubernetes_job" "smoke_tests" {
  name  = "smoke-tests"
  image = var.image
  env   = { HEALTH_URLS = join(" ", var.health_urls) }
  command = ["/bin/sh", "-c", <<-SCRIPT
    failed=0
    for url in $HEALTH_URLS; do
      code=$(curl -s -o /dev/null -w '%%{http_code}' --max-time 10 "$url")
      [ "$code" = 200 ] || { echo "$url answered $code"; failed=$((failed + 1)); }
    done
    n=$(echo $HEALTH_URLS | wc -w)
    if [ "$failed" -gt 0 ]; then
      echo "smoke tests failed: $failed of $n health endpoints" > /dev/termination-log
      exit 1
    fi
    echo "smoke tests passed: $n of $n health endpoints answered 200" > /dev/termination-log
    SCRIPT
  ]
  backoff_limit           = 0
  active_deadline_seconds = 300
  delete_after            = var.delete_after
  timeout                 = "6m"
}

output "smoke_tests" {
  value = step.kubernetes_job.smoke_tests.message
}
