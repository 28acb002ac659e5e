#!/usr/bin/env bash
# Builds fluxrelay for the container image: the image's build stage runs this, and so does
# test/integration/deploy.test.mjs, so that the steps the image depends on are exercised here.
#
#   deploy/build-release.sh BUILD_DIR DESTDIR
#
# BUILD_DIR: a new folder is configured as `make` configures it, without the tests (not shipped),
# RelWithDebInfo: the image ships the optimisation level CI tests (GCC 12 at -O3 also warns
# falsely, which -Werror turns into a failed image build). An existing CMake build folder of this
# source tree is built as it is configured, so the test reuses the tests' own build instead of
# compiling everything again.
# DESTDIR receives usr/local/bin/fluxrelay, stripped, to be copied onto the runtime image's root.
# The build packages come from scripts/install-deps.sh --build, run beforehand.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR DESTDIR" >&2
  exit 2
fi
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$1"
dest_dir="$2"

if [[ -f "$build_dir/CMakeCache.txt" ]]; then
  configured_source="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build_dir/CMakeCache.txt")"
  if [[ "$(cd "$configured_source" && pwd)" != "$source_dir" ]]; then
    echo "build-release: $build_dir is a build of $configured_source, not of $source_dir" >&2
    exit 1
  fi
  build_type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")"
  echo "build-release: reusing $build_dir as configured (build type: ${build_type:-the default of CMakeLists.txt})"
else
  # No tests: their configure step wants doctest and npm, and Debian's nodejs brings no npm.
  cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLUXRELAY_TESTS=OFF
fi

cmake --build "$build_dir" --target fluxrelay --parallel "$(nproc)"

# Debug symbols stay in the build folder; the image gets the stripped binary only.
install -D --mode=0755 --strip "$build_dir/fluxrelay" "$dest_dir/usr/local/bin/fluxrelay"
echo "build-release: installed $dest_dir/usr/local/bin/fluxrelay"
