#!/usr/bin/env bash
# Validates deploy/ offline, without a cluster or a container engine:
#   1. renders the kustomize base and both overlays with `kubectl kustomize`;
#   2. validates every rendered object, and every object in deploy/examples/,
#      against the Kubernetes OpenAPI schemas (PyPI kubernetes-validate, strict:
#      unknown fields are errors) for KUBERNETES_VERSION;
#   3. checks the rules the manifests promise: non-root, read-only root
#      filesystem, no capabilities, RuntimeDefault seccomp, gRPC probes,
#      resources, least-privilege RBAC without wildcards, no API token in
#      resolver pods, two control pods and at least three resolvers in
#      production, one dev pod on a volume in dev;
#   4. feeds every rendered config.toml to the switchboard binary (when built:
#      $SWITCHBOARD_BIN, target/debug or target/release), which rejects
#      unknown keys and bad values.
# kubernetes-validate is installed into a venv in the git-ignored
# tools/kubernetes-validate (idempotent). Prints one line per check and ends
# with "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

VALIDATOR_PACKAGE="kubernetes-validate"
VALIDATOR_VERSION="1.37.0"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.30.0}"
venv="$root/tools/kubernetes-validate"

log() { printf 'validate-deploy: %s\n' "$*" >&2; }

if ! command -v kubectl >/dev/null 2>&1; then
  log "kubectl is needed (for kubectl kustomize); install it and retry"
  exit 1
fi

installed_validator() {
  [[ -x "$venv/bin/python" ]] || return 1
  "$venv/bin/python" - "$VALIDATOR_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata, sys
sys.exit(0 if importlib.metadata.version("kubernetes-validate") == sys.argv[1] else 1)
EOF
}

if installed_validator; then
  log "$VALIDATOR_PACKAGE $VALIDATOR_VERSION already installed"
else
  log "installing $VALIDATOR_PACKAGE $VALIDATOR_VERSION into tools/kubernetes-validate"
  rm -rf "$venv"
  python3 -m venv "$venv"
  PIP_ROOT_USER_ACTION=ignore "$venv/bin/python" -m pip install --quiet \
    --disable-pip-version-check "$VALIDATOR_PACKAGE==$VALIDATOR_VERSION"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for target in base overlays/dev overlays/production; do
  name="${target##*/}"
  log "kubectl kustomize deploy/kustomize/$target"
  kubectl kustomize "deploy/kustomize/$target" >"$work/$name.yaml"
done

binary="${SWITCHBOARD_BIN:-}"
if [[ -z "$binary" ]]; then
  for candidate in target/debug/switchboard target/release/switchboard; do
    if [[ -x "$candidate" ]]; then
      binary="$root/$candidate"
      break
    fi
  done
fi

"$venv/bin/python" - "$work" "$KUBERNETES_VERSION" "$binary" deploy/examples/*.yaml <<'EOF'
import os
import subprocess
import sys
import tomllib

import kubernetes_validate
import yaml

work, k8s_version, binary, *examples = sys.argv[1:]
sources = [(name, os.path.join(work, f"{name}.yaml")) for name in ("base", "dev", "production")]
sources += [(os.path.relpath(path), path) for path in examples]

passed = 0
failed = 0


def report(ok, what, problems=()):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed += 1
        print(f"FAIL  {what}")
        for problem in problems:
            print(f"        {problem}")


def ident(obj):
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj.get('kind', '?')}/{namespace}/{name}" if namespace else f"{obj.get('kind', '?')}/{name}"


def ours(obj):
    return obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/name") == "switchboard"


def policy(obj):
    """Problems with one Switchboard object, as text."""
    problems = []
    kind = obj["kind"]
    if kind == "Deployment":
        pod = obj["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append("pod securityContext.runAsNonRoot must be true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append("pod seccompProfile must be RuntimeDefault")
        component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
        if component == "resolver":
            if pod.get("automountServiceAccountToken") is not False:
                problems.append("resolver pods must not mount a ServiceAccount token")
            if "replicas" in obj["spec"]:
                problems.append("resolver replicas belong to its HorizontalPodAutoscaler")
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            where = f"container {container['name']}"
            sc = container.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities must drop ALL")
            if sc.get("privileged"):
                problems.append(f"{where}: must not be privileged")
            resources = container.get("resources", {})
            for key in ("cpu", "memory"):
                if key not in resources.get("requests", {}):
                    problems.append(f"{where}: needs a {key} request")
            if "memory" not in resources.get("limits", {}):
                problems.append(f"{where}: needs a memory limit")
            for probe in ("livenessProbe", "readinessProbe"):
                if "grpc" not in container.get(probe, {}):
                    problems.append(f"{where}: {probe} must be a gRPC probe")
            ports = {port.get("name"): port.get("containerPort") for port in container.get("ports", [])}
            if ports.get("grpc") != 50051 or "metrics" not in ports:
                problems.append(f"{where}: needs ports grpc (50051) and metrics")
            if container.get("image", "").split(":")[0] == "switchboard":
                problems.append(f"{where}: image name not set by the overlay")
    elif kind in ("Role", "ClusterRole"):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                if any("*" in value for value in rule.get(field, [])):
                    problems.append(f"rule {rule}: no wildcards in {field}")
            if set(rule.get("resources", [])) - {"secrets"}:
                problems.append(f"rule {rule}: only Secrets")
            if set(rule.get("verbs", [])) - {"get", "list", "create", "patch", "delete"}:
                problems.append(f"rule {rule}: only get, list, create, patch, delete")
    elif kind == "ClusterRoleBinding":
        problems.append("Secrets access is granted per namespace (RoleBinding), never cluster-wide")
    elif kind == "RoleBinding":
        if obj["roleRef"] != {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "switchboard-control-secrets",
        }:
            problems.append(f"unexpected roleRef {obj['roleRef']}")
        if obj["metadata"].get("namespace") in (None, "switchboard"):
            problems.append("binds in a managed Airflow namespace, not Switchboard's own")
    elif kind == "ServiceAccount":
        component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
        if component == "resolver" and obj.get("automountServiceAccountToken") is not False:
            problems.append("the resolver's ServiceAccount must not automount a token")
    elif kind == "Service":
        names = [port.get("name") for port in obj["spec"].get("ports", [])]
        if "grpc" not in names:
            problems.append("needs a port named grpc")
    return problems


def check_config(label, text):
    """The binary accepts the file (unknown keys and bad values are errors)."""
    problems = []
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return [f"not TOML: {err}"]
    if not binary:
        return problems
    path = os.path.join(work, f"{label}.config.toml")
    with open(path, "w") as handle:
        handle.write(text)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SWITCHBOARD_")}
    env.pop("VAULT_TOKEN", None)
    run = subprocess.run(
        [binary, "migrate", "--config", path, "--data-dir", os.path.join(work, f"{label}.data"),
         "--database-url", "sqlite::memory:"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    if run.returncode != 0:
        problems.append(f"switchboard rejects it: {run.stderr.strip()}")
    return problems


rendered = {}
for label, path in sources:
    with open(path) as handle:
        objects = [obj for obj in yaml.safe_load_all(handle) if obj]
    rendered[label] = objects
    for obj in objects:
        problems = []
        try:
            kubernetes_validate.validate(obj, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            location = "/".join(str(part) for part in err.path)
            problems.append(f"schema: {location}: {err.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as err:
            problems.append(f"schema: {err}")
        if ours(obj) and label != "base":
            problems += policy(obj)
        report(not problems, f"{label:<10} {ident(obj)}", problems)


def find(label, kind, name):
    return next(
        (obj for obj in rendered[label] if obj["kind"] == kind and obj["metadata"]["name"] == name),
        None,
    )


def env_from_secret(deployment, variable):
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for entry in container.get("env", []):
            if entry["name"] == variable and "secretKeyRef" in entry.get("valueFrom", {}):
                return True
    return False


# Production: two control pods, at least three resolvers, backends from Secrets.
control = find("production", "Deployment", "switchboard-control")
resolver = find("production", "Deployment", "switchboard-resolver")
hpa = find("production", "HorizontalPodAutoscaler", "switchboard-resolver")
report(control is not None and control["spec"].get("replicas", 1) >= 2,
       "production control runs at least 2 replicas")
report(hpa is not None and hpa["spec"]["minReplicas"] >= 3
       and hpa["spec"]["scaleTargetRef"]["name"] == "switchboard-resolver"
       and hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu",
       "production resolver autoscales on CPU from at least 3 replicas")
for deployment in (control, resolver):
    if deployment is None:
        report(False, "production deployments exist")
        continue
    name = deployment["metadata"]["name"]
    report(env_from_secret(deployment, "SWITCHBOARD_DATABASE_URL")
           and env_from_secret(deployment, "VAULT_TOKEN"),
           f"production {name} reads the database URL and Vault token from Secrets")
for kind in ("PodDisruptionBudget", "NetworkPolicy"):
    report(all(find("production", kind, f"switchboard-{c}") for c in ("control", "resolver")),
           f"production has a {kind} for control and for resolver")

# Dev: one `switchboard dev` pod on a volume, behind both Services.
dev_deployments = [obj for obj in rendered["dev"] if obj["kind"] == "Deployment" and ours(obj)]
dev = dev_deployments[0] if len(dev_deployments) == 1 else None
report(dev is not None and dev["spec"]["replicas"] == 1
       and dev["spec"]["template"]["spec"]["containers"][0]["args"] == ["dev"]
       and dev["spec"]["strategy"]["type"] == "Recreate"
       and any("persistentVolumeClaim" in volume for volume in dev["spec"]["template"]["spec"]["volumes"]),
       "dev runs one `switchboard dev` pod (Recreate) on a PersistentVolumeClaim")
dev_selects = {
    obj["metadata"]["name"]: obj["spec"]["selector"].get("app.kubernetes.io/component")
    for obj in rendered["dev"] if obj["kind"] == "Service"
}
report(set(dev_selects) >= {"switchboard-control", "switchboard-resolver"}
       and set(dev_selects.values()) == {"dev"},
       "dev Services switchboard-control and switchboard-resolver select the dev pod")

# Every config.toml the overlays mount is accepted by the binary.
for label in ("dev", "production"):
    for obj in rendered[label]:
        if obj["kind"] == "ConfigMap" and "config.toml" in obj.get("data", {}):
            problems = check_config(label, obj["data"]["config.toml"])
            how = "switchboard accepts" if binary else "parses (switchboard not built: TOML syntax only)"
            report(not problems, f"{label:<10} {ident(obj)} config.toml {how}", problems)

print()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
