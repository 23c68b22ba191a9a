#!/usr/bin/env bash
# End to end against the cluster KUBECONFIG points at: install the operator, point the example
# BatchGateway at the gateway simulator, apply the examples, wait (never sleep) until every
# Batch is Complete, and check the results in their output Secrets.
#
#   E2E_MODE=cluster (default)  `helm upgrade --install` the chart with the in-cluster simulator
#                               (image E2E_IMAGE=repository:tag, already loaded into the cluster).
#   E2E_MODE=outside            for API servers without a kubelet (the test suite): server-side
#                               apply only the chart's CRDs, RBAC and ServiceAccount, then run
#                               E2E_OPERATOR_BIN controller on this machine *as that ServiceAccount*
#                               (a TokenRequest token), against the simulator at E2E_GATEWAY_URL.
#                               This proves the chart's RBAC is enough to run the examples.
#
# Other knobs: HELM, KUBECTL (tool paths), E2E_NAMESPACE (the operator's, default
# llm-batch-operator), E2E_HELM_ARGS (extra chart arguments), E2E_TIMEOUT (per wait, 180s).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
helm="${HELM:-helm}"
kubectl="${KUBECTL:-kubectl}"
mode="${E2E_MODE:-cluster}"
ns="${E2E_NAMESPACE:-llm-batch-operator}"
timeout="${E2E_TIMEOUT:-180s}"
release=llm-batch-operator
chart="$root/charts/llm-batch-operator"
# The quickstart pins namespace default; the other examples follow it there.
examples_ns=default
# shellcheck disable=SC2206 # extra chart arguments, one per word
extra_helm_args=(${E2E_HELM_ARGS:-})

work="$(mktemp -d)"
controller_pid=""
cleanup() {
  if [ -n "$controller_pid" ]; then
    kill "$controller_pid" 2>/dev/null || true
    wait "$controller_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo "e2e: $*" >&2; }

# What to look at when something did not finish.
diagnose() {
  say "FAILED; the state of things:"
  "$kubectl" -n "$examples_ns" get batches,batchgateways -o wide >&2 || true
  "$kubectl" -n "$examples_ns" describe batches >&2 || true
  if [ "$mode" = outside ]; then
    say "controller log (last 60 lines):"
    tail -n 60 "$work/controller.log" >&2 || true
  else
    "$kubectl" -n "$ns" get pods -o wide >&2 || true
    "$kubectl" -n "$ns" logs "deployment/$release" --tail=60 >&2 || true
  fi
}

install_with_helm() {
  local image="${E2E_IMAGE:?E2E_IMAGE=repository:tag of the operator image in the cluster}"
  say "helm install $release ($image) into $ns, with the in-cluster simulator"
  "$helm" upgrade --install "$release" "$chart" --namespace "$ns" --create-namespace \
    --set "image.repository=${image%:*}" --set "image.tag=${image##*:}" --set image.pullPolicy=Never \
    --set simulator.enabled=true --set 'gateways.allowCidrs={10.0.0.0/8}' "${extra_helm_args[@]}" --wait --timeout 5m
  gateway_url="http://$release-simulator.$ns.svc:8080/v1"
}

install_outside() {
  local operator="${E2E_OPERATOR_BIN:?E2E_OPERATOR_BIN=the llm-batch-operator binary}"
  gateway_url="${E2E_GATEWAY_URL:?E2E_GATEWAY_URL=the simulator base URL, ending in /v1}"
  say "server-side applying the chart's CRDs, RBAC and ServiceAccount into $ns"
  "$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply --server-side -f - >/dev/null
  "$helm" template "$release" "$chart" --namespace "$ns" "${extra_helm_args[@]}" \
    --show-only templates/crds.yaml --show-only templates/rbac.yaml --show-only templates/serviceaccount.yaml \
    > "$work/chart.yaml"
  "$kubectl" apply --server-side --force-conflicts --field-manager=llm-batch-operator-e2e -f "$work/chart.yaml"
  "$kubectl" wait --for=condition=Established --timeout="$timeout" \
    crd/batches.llmbatch.io crd/batchgateways.llmbatch.io >/dev/null

  say "running the controller outside the cluster as ServiceAccount $ns/$release"
  local token
  token="$("$kubectl" -n "$ns" create token "$release" --duration=1h)"
  "$kubectl" config view --minify --raw > "$work/kubeconfig"
  KUBECONFIG="$work/kubeconfig" "$kubectl" config set-credentials e2e-operator --token="$token" >/dev/null
  KUBECONFIG="$work/kubeconfig" "$kubectl" config set-context --current --user=e2e-operator >/dev/null
  local args=(controller --namespace "$examples_ns")
  # Never the default 0.0.0.0:8080 on a shared machine: any free loopback port.
  local help
  help="$("$operator" controller --help)"
  if [[ "$help" == *--metrics-addr* ]]; then
    args+=(--metrics-addr 127.0.0.1:0)
  fi
  # The simulator is on this machine's loopback, which a controller refuses unless allowed.
  if [[ "$help" == *--allow-cidr* ]]; then
    args+=(--allow-cidr 127.0.0.0/8)
  fi
  KUBECONFIG="$work/kubeconfig" "$operator" "${args[@]}" > "$work/controller.log" 2>&1 &
  controller_pid=$!
}

apply_examples() {
  say "applying the examples into $examples_ns, the BatchGateway pointed at $gateway_url"
  # The example gateway names api.openai.com and polls every 30s; here it is the simulator, polled fast.
  sed -e "s#url: https://api.openai.com/v1#url: $gateway_url#" -e 's#initial: 30s#initial: 1s#' \
    -e 's#max: 5m#max: 2s#' "$root/examples/cluster/gateway.yaml" > "$work/gateway.yaml"
  if ! grep -q "url: $gateway_url" "$work/gateway.yaml"; then
    say "examples/cluster/gateway.yaml no longer has the url this script rewrites"
    exit 1
  fi
  "$kubectl" apply -n "$examples_ns" -f "$work/gateway.yaml"
  "$kubectl" apply -n "$examples_ns" -f "$root/examples/quickstart/" \
    -f "$root/examples/cluster/embeddings.yaml" -f "$root/examples/cluster/eval-suite.yaml"
}

# batch name, output Secret, requests it holds
expected=(
  "ticket-triage ticket-triage-results 20"
  "docs-embeddings docs-embeddings 3"
  "eval-suite eval-suite-results 4"
)

wait_and_check() {
  local names=()
  for line in "${expected[@]}"; do
    read -r name _ _ <<< "$line"
    names+=("batch/$name")
  done
  say "waiting for ${names[*]} to be Complete"
  if ! "$kubectl" -n "$examples_ns" wait --for=condition=Complete --timeout="$timeout" "${names[@]}"; then
    diagnose
    exit 1
  fi
  "$kubectl" -n "$examples_ns" get batches
  for line in "${expected[@]}"; do
    read -r name secret requests <<< "$line"
    local phase completed lines
    phase="$("$kubectl" -n "$examples_ns" get "batch/$name" -o jsonpath='{.status.phase}')"
    completed="$("$kubectl" -n "$examples_ns" get "batch/$name" -o jsonpath='{.status.requestCounts.completed}')"
    lines="$("$kubectl" -n "$examples_ns" get "secret/$secret" -o jsonpath='{.data.output\.jsonl}' | base64 -d | wc -l)"
    if [ "$phase" != Succeeded ] || [ "$completed" != "$requests" ] || [ "$lines" -ne "$requests" ]; then
      say "$name: phase $phase, $completed completed, $lines output lines in Secret $secret; expected $requests"
      diagnose
      exit 1
    fi
    say "$name: Succeeded, $lines result lines in Secret $secret"
  done
}

# In a cluster the chart turns leader election on: the running controller holds the Lease.
check_lease() {
  local holder
  holder="$("$kubectl" -n "$ns" get lease llm-batch-operator -o jsonpath='{.spec.holderIdentity}')"
  if [ -z "$holder" ]; then
    say "nobody holds Lease $ns/llm-batch-operator"
    diagnose
    exit 1
  fi
  say "Lease $ns/llm-batch-operator held by $holder"
}

case "$mode" in
  cluster) install_with_helm ;;
  outside) install_outside ;;
  *) say "E2E_MODE must be cluster or outside, not $mode"; exit 2 ;;
esac
apply_examples
wait_and_check
if [ "$mode" = cluster ]; then
  check_lease
fi
say "ok"
