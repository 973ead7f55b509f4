#!/usr/bin/env bash
# End to end on kind: build the CPU image, create a kind cluster, install the KubeRay operator from its
# Helm chart, create the API keys Secret, apply the cpu overlay with random weights, wait for the RayService
# to be Ready, check that a request without a key gets 401, classify a photo with the key, delete the
# cluster. Needs docker, kind, kubectl and helm, and about 6 CPUs and 10 GiB for the kind node. Not run
# on the machine this was written on (no Docker engine).
#   deploy/k8s/e2e.sh                  # KUBERAY_VERSION=1.7.0 CLUSTER=hornet-e2e by default
set -euo pipefail

KUBERAY_VERSION="${KUBERAY_VERSION:-1.7.0}"   # the release of the CRD tests/data validates against
CLUSTER="${CLUSTER:-hornet-e2e}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d "$ROOT/deploy/k8s/.e2e.XXXXXX")"   # inside the repo: kustomize refuses absolute paths
PORT_FORWARD=""

cleanup() {
  if [ -n "$PORT_FORWARD" ]; then kill "$PORT_FORWARD" 2>/dev/null || true; fi
  kind delete cluster --name "$CLUSTER" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The image under the name the cpu overlay renders, so the kind node has it and never pulls.
IMAGE="$(kubectl kustomize "$ROOT/deploy/k8s/overlays/cpu" | awk '$1 == "image:" && !seen++ {print $2}')"
docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"

kind create cluster --name "$CLUSTER" --wait 180s
kind load docker-image "$IMAGE" --name "$CLUSTER"
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update
helm install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_VERSION" --wait --timeout 10m

# The cpu overlay with random weights: no checkpoint download, no Prometheus Operator objects
# (kind has neither the checkpoints' network nor the monitoring CRDs).
sed 's/weights_policy: required/weights_policy: random/' \
  "$ROOT/deploy/k8s/overlays/cpu/serve-config.yaml" > "$WORK/serve-config.yaml"
cat > "$WORK/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../overlays/cpu]
patches:
  - path: serve-config.yaml
  - patch: '{"$patch": "delete", "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "hornet-ray"}}'
  - patch: '{"$patch": "delete", "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "hornet-serve"}}'
configMapGenerator:
  - {name: hornet-checkpoint-urls, behavior: replace, literals: [checkpoint-urls=]}
EOF
grep -q 'weights_policy: random' "$WORK/serve-config.yaml"
# The API keys Secret the gateways mount (deploy/README.md "API keys"): one key, made here, stored hashed.
API_KEY="hsk_$(openssl rand -hex 24)"
printf 'e2e %s\n' "$(printf '%s' "$API_KEY" | sha256sum | cut -d' ' -f1)" > "$WORK/api-keys"
kubectl create secret generic hornet-api-keys --from-file=keys="$WORK/api-keys"
kubectl apply -k "$WORK"
kubectl wait rayservice/hornet --for=condition=Ready --timeout=20m

kubectl port-forward svc/hornet-serve-svc 18000:8000 >/dev/null &
PORT_FORWARD=$!
for _ in $(seq 30); do curl -sf http://127.0.0.1:18000/healthz >/dev/null && break; sleep 2; done
URL='http://127.0.0.1:18000/v1/classify?model=hornet-t'
STATUS="$(curl -s -o /dev/null -w '%{http_code}' -F file=@"$ROOT/tests/data/public_input.png" "$URL")"
[ "$STATUS" = 401 ] || { echo "e2e: expected 401 without an API key, got $STATUS"; exit 1; }
ANSWER="$(curl -sf -H "Authorization: Bearer $API_KEY" -F file=@"$ROOT/tests/data/public_input.png" "$URL")"
echo "$ANSWER"
grep -q '"predictions"' <<<"$ANSWER"
echo "e2e: the RayService answered a classification"
