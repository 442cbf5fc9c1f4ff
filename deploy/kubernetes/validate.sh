#!/usr/bin/env bash
# Validates the manifests against the Kubernetes 1.30 schemas, strictly (unknown fields are
# errors), with kubernetes-validate from PyPI: every resource file of the PostgreSQL variant,
# and both variants as kustomize renders them (kubectl kustomize). Run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${VENV:-.venv}
[ -x "$venv/bin/kubernetes-validate" ] || "$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
validate() { "$venv/bin/kubernetes-validate" -k 1.30.0 --strict --quiet "$@"; }
validate $(ls deploy/kubernetes/postgres/*.yaml | grep -v kustomization.yaml) deploy/kubernetes/sqlite/pvc.yaml
if command -v kubectl >/dev/null; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    kubectl kustomize deploy/kubernetes >"$out/postgres.yaml"
    kubectl kustomize deploy/kubernetes/sqlite >"$out/sqlite.yaml"
    validate "$out/postgres.yaml" "$out/sqlite.yaml"
    # The SQLite variant has one replica, no autoscaler, and its data on the claim.
    grep -q 'replicas: 1' "$out/sqlite.yaml"
    ! grep -q 'kind: HorizontalPodAutoscaler' "$out/sqlite.yaml"
    grep -q 'claimName: iamgate-data' "$out/sqlite.yaml"
    echo "manifests valid (files and both rendered variants, Kubernetes 1.30, strict)"
else
    [ -z "${CI_REQUIRE_KUBECTL:-}" ] || { echo "kubectl is required here"; exit 1; }
    echo "*** kubectl not installed: the rendered variants were NOT validated, only the files ***"
fi
