#!/usr/bin/env bash
# Installs what Longshot needs on a fresh machine, idempotently, then puts it on PATH.
# Source it (`. scripts/bootstrap.sh`) from the repo root; it exports PATH.
#   - Node >= 22: the system's if new enough, else Node 24 from the npm registry's `node` package in .tools/node
#   - pnpm 10 in .tools/node (from the npm registry; corepack is not used)
#   - Debian packages when missing: nats-server, bubblewrap (the local sandbox provider's isolation),
#     docker-compose (v1: validates deploy/ and infra/ compose files; no engine needed), prometheus
#     (longshot --observe and the observability tests; Debian's, no server started), tmux (dashboard test)
#   - workspace dependencies (pnpm install --frozen-lockfile) when the lockfile changed
set -euo pipefail
LONGSHOT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$LONGSHOT_ROOT/.tools/node"
say() { [ "${LONGSHOT_QUIET:-0}" = 1 ] || echo "bootstrap: $*" >&2; }

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ -x "$TOOLS/bin/node" ] && [ "$(node_major "$TOOLS/bin/node")" -ge 22 ]; then
  export PATH="$TOOLS/bin:$PATH"
elif command -v node >/dev/null && [ "$(node_major node)" -ge 22 ]; then
  :
else
  say "installing Node 24 into .tools/node (npm registry package 'node@24')"
  npm install -g --prefix "$TOOLS" --no-audit --no-fund --loglevel=error node@24 >&2
  [ "$(node_major "$TOOLS/bin/node")" -ge 22 ] || { echo "bootstrap: Node 24 install failed" >&2; exit 1; }
  export PATH="$TOOLS/bin:$PATH"
fi

if ! command -v pnpm >/dev/null || [ "$(pnpm --version 2>/dev/null | cut -d. -f1)" != 10 ]; then
  if [ ! -x "$TOOLS/bin/pnpm" ]; then
    say "installing pnpm 10 into .tools/node"
    npm install -g --prefix "$TOOLS" --no-audit --no-fund --loglevel=error pnpm@10 >&2
  fi
  export PATH="$TOOLS/bin:$PATH"
fi

export PATH="$PATH:/usr/sbin:/usr/local/sbin"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
apt_install() { # packages...
  $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
}
required=()
command -v nats-server >/dev/null || required+=(nats-server)
command -v bwrap >/dev/null || required+=(bubblewrap)
if [ "${#required[@]}" -gt 0 ]; then
  say "installing ${required[*]} (Debian packages)"
  apt_install "${required[@]}" \
    || { echo "bootstrap: could not install ${required[*]}; install them (nats-server: or set NATS_SERVER_BIN)" >&2; exit 1; }
fi
# Optional: without it the compose-file checks say they cannot run.
if ! command -v docker-compose >/dev/null; then
  say "installing docker-compose (Debian package; validates compose files, no engine needed)"
  apt_install docker-compose || say "docker-compose not installed; compose-file checks will fail"
fi
# Optional: without it the CLI's dashboard test cannot drive a terminal.
if ! command -v tmux >/dev/null; then
  say "installing tmux (Debian package; the CLI's dashboard test runs it in a terminal)"
  apt_install tmux || say "tmux not installed; the dashboard test will fail"
fi
# Optional: without it `longshot --observe` and the observability tests say how to install it and fail.
if ! command -v prometheus >/dev/null; then
  say "installing prometheus (Debian package; longshot --observe and the dashboard tests)"
  apt_install prometheus || say "prometheus not installed; --observe and the observability tests will fail"
fi
command -v git >/dev/null || { echo "bootstrap: git is required" >&2; exit 1; }

STAMP="$LONGSHOT_ROOT/node_modules/.longshot-lock"
LOCKSUM="$(sha1sum "$LONGSHOT_ROOT/pnpm-lock.yaml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$LOCKSUM" ]; then
  say "installing workspace dependencies (pnpm install --frozen-lockfile)"
  (cd "$LONGSHOT_ROOT" && pnpm install --frozen-lockfile --reporter=silent >&2)
  echo "$LOCKSUM" > "$STAMP"
fi
