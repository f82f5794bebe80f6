#!/usr/bin/env bash
# Builds (once, cached under tools/) the venvs the Airflow shim tests and its
# benchmark run in, and installs the shim (shim/airflow) into them.
#   scripts/airflow-shim-venvs.sh      # prints "MAJOR=VENV" for Airflow 2 and 3
#
# Airflow itself comes from pinned requirement files (Airflow's constraint
# files can't be fetched here): Airflow 3 from tests/airflow/requirements-3.txt
# through scripts/airflow-venv.sh (tools/airflow-3); Airflow 2.10 from
# tests/airflow/requirements-2.txt the same way once that file exists, until
# then from tests/airflow/shim/requirements-airflow-2.txt (tools/airflow-shim-base-2).
# tools/airflow-shim-MAJOR is a small overlay venv on top of that Airflow venv (a
# .pth file adds its site-packages) holding pytest, the shim and, on 3, the
# benchmark's Vault provider, so the shared Airflow venvs are never modified.
# Each venv is rebuilt when its requirement files change; the shim is rebuilt
# when shim/airflow or proto/ change.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/tools"
shim_tests="$root/tests/airflow/shim"
pip_quiet=(--quiet --disable-pip-version-check)

log() { echo "airflow-shim-venvs: $*" >&2; }

# A venv built from one pinned requirements file, like scripts/airflow-venv.sh does.
pinned_venv() {
  local requirements=$1 venv=$2 stamp want started
  stamp="$venv/.requirements.sha256"
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -x "$venv/bin/airflow" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "$venv is up to date"
  else
    log "building $venv from ${requirements#"$root"/} (a minute or two)"
    started=$(date +%s)
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install "${pip_quiet[@]}" --no-deps -r "$requirements" >&2
    echo "$want" >"$stamp"
    log "built $venv in $(( $(date +%s) - started ))s"
  fi
}

base_venv() {
  local major=$1
  if [ -f "$root/tests/airflow/requirements-$major.txt" ]; then
    "$root/scripts/airflow-venv.sh" "$major"
  else
    pinned_venv "$shim_tests/requirements-airflow-$major.txt" "$tools/airflow-shim-base-$major"
    echo "$tools/airflow-shim-base-$major"
  fi
}

overlay_venv() {
  local major=$1 base=$2 venv="$tools/airflow-shim-$1" want stamp site base_site
  local -a requirements=("$shim_tests/requirements-overlay.txt")
  [ "$major" = 3 ] && requirements+=("$shim_tests/requirements-bench.txt")
  stamp="$venv/.overlay.sha256"
  want=$( { cat "$base/.requirements.sha256"; echo "$base v2"; cat "${requirements[@]}"; } | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "$venv is up to date"
  else
    log "building overlay $venv on $base"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    base_site=$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$base_site" >"$site/_airflow_base.pth"
    # An `airflow` command of the overlay (executors run `airflow tasks run` by name).
    printf '#!%s\nfrom airflow.__main__ import main\nmain()\n' "$venv/bin/python" >"$venv/bin/airflow"
    chmod +x "$venv/bin/airflow"
    for requirement in "${requirements[@]}"; do
      "$venv/bin/pip" install "${pip_quiet[@]}" --no-deps -r "$requirement" >&2
    done
    echo "$want" >"$stamp"
  fi
  echo "$venv"
}

declare -A venvs
for major in 2 3; do
  base=$(base_venv "$major")
  venvs[$major]=$(overlay_venv "$major" "$base")
done

# The shim: one wheel (stubs generated from proto/ by its build), installed into both overlays.
shim_hash=$(cd "$root" && find shim/airflow proto -type f \
  \( -name '*.py' -o -name '*.toml' -o -name '*.proto' -o -name '*.md' \) \
  -not -path '*/build/*' -not -path '*/proto/switchboard/v1/*_pb2*' -not -path '*.egg-info/*' \
  -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
wheels="$tools/airflow-shim-wheel"
for major in 2 3; do
  venv=${venvs[$major]}
  if [ "$(cat "$venv/.shim.sha256" 2>/dev/null)" != "$shim_hash" ]; then
    if [ "$(cat "$wheels/.shim.sha256" 2>/dev/null)" != "$shim_hash" ]; then
      log "building the shim wheel (stubs from proto/)"
      rm -rf "$wheels"
      "${venvs[3]}/bin/pip" wheel "${pip_quiet[@]}" --no-deps -w "$wheels" "$root/shim/airflow" >&2
      echo "$shim_hash" >"$wheels/.shim.sha256"
    fi
    "$venv/bin/pip" install "${pip_quiet[@]}" --no-deps --force-reinstall "$wheels"/switchboard_airflow-*.whl >&2
    echo "$shim_hash" >"$venv/.shim.sha256"
  fi
done

for major in 2 3; do
  echo "$major=${venvs[$major]}"
done
