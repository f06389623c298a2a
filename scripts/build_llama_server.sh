#!/usr/bin/env bash
# Build llama.cpp's own server (llama-server) from the llama-cpp-python sdist on PyPI.
#
# The sdist carries the whole llama.cpp tree (vendor/llama.cpp), so one pinned PyPI package gives the
# server binary and the conversion scripts (convert_hf_to_gguf.py) that service/generation uses.
# pip's cache makes the download instant the second time; the build is skipped when the binary for this
# version is already there.
#
# usage: scripts/build_llama_server.sh VENV_DIR   (installs VENV_DIR/llama.cpp/{bin/llama-server,src/})
set -euo pipefail

VENV="${1:?usage: $0 VENV_DIR}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
JOBS="${JOBS:-$(nproc)}"
ROOT="$(cd "$VENV" && pwd)/llama.cpp"
STAMP="$ROOT/.built-$VERSION"

if [[ -f "$STAMP" && -x "$ROOT/bin/llama-server" ]]; then
    exit 0
fi
command -v cmake >/dev/null || { echo "build_llama_server: cmake is missing (apt-get install cmake)" >&2; exit 1; }
command -v c++ >/dev/null || { echo "build_llama_server: a C++ compiler is missing (apt-get install g++)" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/pip" download --quiet --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

rm -rf "$ROOT"
mkdir -p "$ROOT/bin"
# The conversion scripts and their gguf-py stay with the binary (run from there, never copied in the repo).
cp -r "$SRC" "$ROOT/src"

# No network at build time: no prebuilt web UI, no TLS; only the server target.
cmake -S "$ROOT/src" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
    -DGGML_NATIVE=ON >"$ROOT/cmake.log"
cmake --build "$ROOT/build" --target llama-server -j "$JOBS" >"$ROOT/build.log"
cp "$ROOT/build/bin/llama-server" "$ROOT/bin/llama-server"
rm -rf "$ROOT/build"
touch "$STAMP"
echo "build_llama_server: $ROOT/bin/llama-server (llama-cpp-python $VERSION)"
