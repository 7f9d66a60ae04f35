#!/usr/bin/env bash
# docs/lint_openapi.sh [--install] — lints docs/openapi.yaml with Redocly CLI
# (rules: docs/redocly.yaml). Any error or warning fails (exit 1).
#
# Redocly lives in var/node (git-ignored; PARLEY_NODE_DIR overrides), put
# there by `npm install --prefix var/node @redocly/cli@<pinned>` when it is
# missing or another version; an installed one is reused. `--install` only
# installs (tools/parley test runs that before ctest, so a failed download
# stops the run early). Without npm and without an installed Redocly the
# lint is skipped: exit 77 (ctest's SKIP_RETURN_CODE for lint_openapi).
set -euo pipefail

# Pinned exactly, for reproducible lint results (1.x: works with Node >= 18.17,
# e.g. Debian 12's nodejs 18.20).
REDOCLY_VERSION=1.34.20

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
NODE_DIR="${PARLEY_NODE_DIR:-$ROOT/var/node}"
BIN="$NODE_DIR/node_modules/.bin/redocly"
PKG="$NODE_DIR/node_modules/@redocly/cli/package.json"
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1

log () { printf '[lint_openapi] %s\n' "$*" >&2; }

installed () {
    [[ -x "$BIN" && -f "$PKG" ]] \
        && grep -q "\"version\": *\"$REDOCLY_VERSION\"" "$PKG"
}

install () {
    installed && return 0
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        log "node/npm not found: cannot install @redocly/cli (Debian: apt-get install nodejs npm)"
        return 77
    fi
    log "installing @redocly/cli@$REDOCLY_VERSION into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
        "@redocly/cli@$REDOCLY_VERSION" >&2 || { log "npm install failed"; return 1; }
    installed || { log "npm install did not give $BIN $REDOCLY_VERSION"; return 1; }
}

status=0
install || status=$?
(( status == 0 )) || exit "$status"
[[ "${1:-}" == --install ]] && exit 0

out="$("$BIN" lint --config "$ROOT/docs/redocly.yaml" "$ROOT/docs/openapi.yaml" 2>&1)" || status=$?
printf '%s\n' "$out"
if (( status != 0 )); then
    log "FAILED: docs/openapi.yaml has lint errors"
    exit 1
fi
if grep -qiE '[0-9]+ warnings?' <<<"$out"; then
    log "FAILED: docs/openapi.yaml has lint warnings"
    exit 1
fi
log "docs/openapi.yaml: no problems"
