#!/bin/sh
# What the VS Code end-to-end test (tests/test_vscode_e2e.py) needs outside the repository and the
# venv: Debian's chromium (Playwright cannot download its own browser builds here) and ripgrep,
# then code-server from the npm registry (install-code-server.sh). `make test-vscode` runs this.
set -eu

missing=""
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="chromium"
command -v rg >/dev/null 2>&1 || missing="$missing ripgrep"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
    else
        echo "provision: the VS Code end-to-end test needs the Debian packages:$missing" >&2
        echo "provision: install them as root (sudo apt-get install$missing), then run make test-vscode again" >&2
        exit 1
    fi
fi
exec sh "$(dirname "$0")/install-code-server.sh"
