#!/bin/sh
# Installs code-server from the npm registry into a cache folder, for the browser end-to-end test
# (tests/test_vscode_e2e.py). Usage: install-code-server.sh [DIR]; default
# ${XDG_CACHE_HOME:-~/.cache}/infiller/e2e/code-server-$VERSION. Idempotent: a finished install
# leaves DIR/.installed and is not repeated.
#
# `npm install code-server` alone fails on a machine that reaches only the package registries: its
# postinstall (and the install scripts of its dependencies) download prebuilt binaries and Node
# headers from elsewhere. So everything is installed with --ignore-scripts and only what the server
# needs is then done by hand, as code-server's postinstall.sh would:
#   - native modules compiled with node-gyp against the local Node headers (argon2 for code-server
#     itself; spdlog, node-pty, native-watchdog, deviceid for VS Code's server);
#   - ripgrep (Quick Open and search run it): the system's `rg` linked where @vscode/ripgrep's
#     postinstall would have downloaded its own;
#   - the node_modules.asar link and the bin/ script links.
# Not installed: lib/vscode/extensions' shared typescript (only the built-in TypeScript extension
# uses it) and kerberos (proxy authentication).
set -eu

VERSION=4.100.3
DIR=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/infiller/e2e/code-server-$VERSION}
[ -f "$DIR/.installed" ] && exit 0

say() { echo "install-code-server: $*"; }
command -v node >/dev/null || { say "node not found (code-server $VERSION needs Node 20)"; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" = 20 ] || { say "code-server $VERSION needs Node 20, found $(node --version)"; exit 1; }
command -v rg >/dev/null || { say "ripgrep (rg) not found: apt-get install ripgrep"; exit 1; }

# node-gyp as bundled with npm; Node's own headers, where the distribution ships them, instead of a
# download from nodejs.org.
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
NODE_GYP="$NPM_DIR/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$NODE_GYP" ] || { say "node-gyp not found beside npm ($NODE_GYP)"; exit 1; }
NODE_PREFIX=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ -f "$NODE_PREFIX/include/node/node.h" ]; then
    export npm_config_nodedir="$NODE_PREFIX"
fi
export PATH="$(dirname "$NODE_GYP"):$PATH"  # node-pre-gyp runs `node-gyp`

rm -rf "$DIR"
mkdir -p "$DIR"
cd "$DIR"
echo '{"private": true}' >package.json
say "npm install code-server@$VERSION into $DIR"
npm install --ignore-scripts --no-audit --no-fund --loglevel=error "code-server@$VERSION"
CS="$DIR/node_modules/code-server"
(cd "$CS/lib/vscode" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)

say "compiling native modules"
(cd "$DIR/node_modules/argon2" && node ../@mapbox/node-pre-gyp/bin/node-pre-gyp rebuild --loglevel=warn)
for module in @vscode/spdlog node-pty native-watchdog @vscode/deviceid; do
    (cd "$CS/lib/vscode/node_modules/$module" && node "$NODE_GYP" rebuild --loglevel=warn)
done

mkdir -p "$CS/lib/vscode/node_modules/@vscode/ripgrep/bin"
ln -sfn "$(command -v rg)" "$CS/lib/vscode/node_modules/@vscode/ripgrep/bin/rg"
ln -sfn node_modules "$CS/lib/vscode/node_modules.asar"
ln -sfn code-linux.sh "$CS/lib/vscode/bin/remote-cli/code-server"
ln -sfn browser-linux.sh "$CS/lib/vscode/bin/helpers/browser.sh"

# (code-server writes a default config file under $XDG_CONFIG_HOME on its first run: keep it here)
XDG_CONFIG_HOME="$DIR/.config" node "$CS/out/node/entry.js" --version >/dev/null
touch "$DIR/.installed"
say "code-server $VERSION ready: $CS/out/node/entry.js"
