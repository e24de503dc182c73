#!/usr/bin/env bash
# Build llama.cpp's own llama-server, the peer of the typing replay, from the llama.cpp sources
# vendored in the llama-cpp-python sdist infiller itself pins (so both run the same llama.cpp).
# Cached under ~/.cache/infiller/llama-server/<version>/; a second run only prints the path.
#
#   bench/peer/build_llama_server.sh            # -> prints the llama-server binary path
#   JOBS=4 bench/peer/build_llama_server.sh     # more compile jobs where cores allow
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-$(dirname "$0")/../../.venv/bin/python}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/infiller/llama-server/$VERSION"
BIN="$CACHE/llama-server"

if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$CACHE"
started=$(date +%s)
src="$CACHE/src"
if [[ ! -d "$src" ]]; then
    dl="$CACHE/download"
    mkdir -p "$dl"
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$dl" >&2
    mkdir -p "$src.partial"
    tar -xzf "$dl"/llama_cpp_python-"$VERSION".tar.gz -C "$src.partial" --strip-components=1
    mv "$src.partial" "$src"
fi
cmake -S "$src/vendor/llama.cpp" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$CACHE/build" --target llama-server -j"$JOBS" >&2
cp "$CACHE/build/bin/llama-server" "$BIN.partial"
mv "$BIN.partial" "$BIN"
echo "built llama-server $VERSION in $(( $(date +%s) - started )) s" >&2
echo "$BIN"
