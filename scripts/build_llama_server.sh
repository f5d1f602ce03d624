#!/usr/bin/env bash
# Build llama.cpp's llama-server from the llama.cpp that the installed llama-cpp-python vendors (its sdist),
# with the test command's portable CPU flags, into ${1:-.cache/llama-server}; prints the binary's path.
# tests/test_llama_server.py runs against it when LFM_LLAMA_SERVER names the binary. About 15 minutes on 2 cores,
# so the test command does not build it (docs/runtimes/index.md, "Remote servers").
set -euo pipefail
python=${PYTHON:-.venvs/latest/bin/python}
out=$(mkdir -p "${1:-.cache/llama-server}" && cd "${1:-.cache/llama-server}" && pwd)
version=$("$python" -c "import llama_cpp; print(llama_cpp.__version__)")
cd "$out"
[ -f "llama_cpp_python-$version.tar.gz" ] ||
  "$python" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d .
[ -d "llama_cpp_python-$version" ] || tar xzf "llama_cpp_python-$version.tar.gz"
cd "llama_cpp_python-$version/vendor/llama.cpp"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
  -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DGGML_OPENMP=OFF > "$out/cmake.log"
cmake --build build --target llama-server -j "$(nproc)" >> "$out/cmake.log"
echo "$out/llama_cpp_python-$version/vendor/llama.cpp/build/bin/llama-server"
