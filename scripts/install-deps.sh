#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build, test and run fluxrelay locally.
# Idempotent: asks dpkg what is already there and installs only what is missing.
set -euo pipefail

# What compiling needs; `--build` installs only these (the container image's build stage).
# nodejs: CMake's configure step looks for node, the integration tests' runner.
build_packages=(
  build-essential cmake ninja-build pkg-config g++
  libboost1.81-dev nlohmann-json3-dev libssl-dev libre2-dev libspdlog-dev doctest-dev
  libyaml-cpp-dev libsqlite3-dev libhiredis-dev
  nodejs ca-certificates
)
packages=(
  "${build_packages[@]}"
  prometheus-alertmanager
  redis-server   # the Redis spool's tests run a real one (storage.redis)
  npm
  kubernetes-client yamllint prometheus   # the deploy tests: kubectl kustomize, yamllint, promtool, prometheus
  chromium   # the status page test drives Debian's Chromium (never a downloaded browser)
  curl
  tinyproxy-bin   # the proxy tests send through a real forward proxy (integration.proxy)
  fiu-utils libfiu-dev   # the storage fault tests fail the spool's writes (fiu-run, fiu-ctrl)
)
# Optional: `--fuzz` installs the build packages and these, for `make fuzz` (clang's libFuzzer;
# llvm for llvm-symbolizer, which names the lines in a finding's stack trace).
fuzz_packages=(clang libclang-rt-dev llvm)
# Optional: `--tidy` installs the build packages and clang-tidy, for `make tidy`.
tidy_packages=(clang-tidy)
# Optional: `--image` installs what `make image` needs to build the container image without a
# registry: buildah builds deploy/Dockerfile (chroot isolation) and mmdebstrap makes its Debian
# base images from the Debian archive apt already uses.
image_packages=(buildah mmdebstrap)

installed() {
  # "install ok installed" is the only state in which a package is fully usable.
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

if [[ "${1:-}" == --build ]]; then
  packages=("${build_packages[@]}")
elif [[ "${1:-}" == --fuzz ]]; then
  packages=("${build_packages[@]}" "${fuzz_packages[@]}")
elif [[ "${1:-}" == --tidy ]]; then
  packages=("${build_packages[@]}" "${tidy_packages[@]}")
elif [[ "${1:-}" == --image ]]; then
  packages=("${image_packages[@]}")
fi

missing=()
for package in "${packages[@]}"; do
  if installed "$package"; then
    continue
  fi
  # Some nodejs builds ship npm inside and conflict with Debian's npm package: a working
  # npm command is enough.
  if [[ "$package" == npm ]] && command -v npm >/dev/null; then
    continue
  fi
  # Any kubectl renders deploy/ with its kustomize; Debian's would conflict with another packaging.
  if [[ "$package" == kubernetes-client ]] && command -v kubectl >/dev/null; then
    continue
  fi
  missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
