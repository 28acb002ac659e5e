#!/usr/bin/env bash
# Builds the container image from deploy/Dockerfile with buildah, without a container registry:
# the Debian base images its FROM lines name are made here first with mmdebstrap, from the Debian
# archive this machine's apt already uses, and tagged with exactly those names, so the Dockerfile
# stays the one a user builds with docker.
#
#   deploy/build-image.sh [--rebuild-base]
#
# Gives fluxrelay:VERSION (VERSION from CMakeLists.txt's project()). A base image already present
# is reused; --rebuild-base makes them again. `make image` runs this after
# `scripts/install-deps.sh --image` (buildah, mmdebstrap). Needs root: mmdebstrap's root mode and
# buildah's chroot isolation (RUN steps share the host's network, no container runtime needed).
#
# The base images approximate Debian's official ones (debuerreotype): debian:SUITE is the minbase
# variant (Essential and Priority: required packages, apt), merged /usr, with the apt settings
# those images carry (no translations, compressed indexes, no package caches, dpkg's unsafe-io);
# debian:SUITE-slim additionally has dpkg leave out documentation (but copyright files), man and
# info pages, groff and lintian files and locales (but locale.alias), in the bootstrap and in every
# later install. Their sources are the Debian archive and security URIs this machine's apt reads
# (suite, SUITE-updates, SUITE-security), and the apt settings this machine needs to reach them
# (proxies, Check-Valid-Until, Check-Date) are copied into the base image's apt configuration.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dockerfile="$root/deploy/Dockerfile"
rebuild_base=0
case "${1:-}" in
  "") ;;
  --rebuild-base) rebuild_base=1 ;;
  *) echo "usage: $0 [--rebuild-base]" >&2; exit 2 ;;
esac

say() { echo "build-image: $*" >&2; }
die() { say "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap's root mode, buildah's chroot isolation)"
for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh --image"
done

version="$(sed -n 's/^project(fluxrelay VERSION \([^ )]*\).*/\1/p' "$root/CMakeLists.txt")"
[[ -n "$version" ]] || die "no version in CMakeLists.txt's project()"
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
image="fluxrelay:$version"

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# The Debian archive URIs apt reads on this machine: "LABEL URI" pairs (Label Debian: the archive,
# Debian-Security: the security archive), from the indexes `apt-get update` fetched.
host_debian_uris() {
  # shellcheck disable=SC2016 # apt's format, not the shell's
  apt-get indextargets --format '$(LABEL) $(REPO_URI)' 'Identifier: Packages' 2>/dev/null |
    awk '$1 == "Debian" || $1 == "Debian-Security"' | sort -u
}

# mmdebstrap's mirror arguments for SUITE: one-line sources from this machine's Debian URIs, or
# none (mmdebstrap's default mirror) when apt has no Debian index here.
mirror_lines() {
  local suite="$1" archive="" security="" label uri
  while read -r label uri; do
    [[ $label == Debian && -z $archive ]] && archive="$uri"
    [[ $label == Debian-Security && -z $security ]] && security="$uri"
  done < <(host_debian_uris)
  if [[ -z $archive ]]; then
    say "apt lists no Debian archive here (run apt-get update?): mmdebstrap's default mirror"
    return
  fi
  echo "deb $archive $suite main"
  echo "deb $archive $suite-updates main"
  if [[ -n $security ]]; then
    echo "deb $security $suite-security main"
  fi
}

# --aptopt arguments for the settings this machine's apt needs to reach its archive.
host_apt_options() {
  local key value
  for key in Acquire::http::Proxy Acquire::https::Proxy Acquire::Check-Valid-Until Acquire::Check-Date; do
    value="$(apt-config dump --no-empty --format '%f %v%n' "$key" 2>/dev/null |
      awk -v key="$key" '$1 == key { print substr($0, length(key) + 2); exit }')"
    if [[ -n $value ]]; then
      printf -- '--aptopt=%s "%s"\n' "$key" "$value"
    fi
  done
}

# Makes debian:SUITE or debian:SUITE-slim in buildah's storage.
make_base() {
  local name="$1" suite slim=0 flavour=""
  [[ $name =~ ^debian:([a-z]+)(-slim)?$ ]] || die "$name: only debian:SUITE and debian:SUITE-slim can be made here"
  suite="${BASH_REMATCH[1]}"
  if [[ -n "${BASH_REMATCH[2]}" ]]; then
    slim=1
    flavour=" slim"
  fi

  local -a options=(--variant=minbase --format=tar --dpkgopt=force-unsafe-io)
  mapfile -t -O "${#options[@]}" options < <(host_apt_options)
  # As the official images: no translations, compressed package lists, no .deb kept after an
  # install (so a RUN apt-get install leaves only the lists, which the Dockerfile removes).
  cat > "$work/apt-minimal" <<'EOF'
Acquire::Languages "none";
Acquire::GzipIndexes "true";
APT::Keep-Downloaded-Packages "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  options+=("--customize-hook=upload $work/apt-minimal /etc/apt/apt.conf.d/docker-minimal")
  # The package caches the bootstrap left (apt-get clean no longer finds them by name).
  # shellcheck disable=SC2016 # expanded by mmdebstrap's hook shell, $1 being the new root
  options+=('--customize-hook=rm -f "$1"/var/cache/apt/*.bin')
  # Merged /usr set up directly, as Debian's images are, not by the usrmerge package (which
  # would bring perl along).
  local merged_usr_hooks=/usr/share/mmdebstrap/hooks/maybe-merged-usr
  if [[ -d $merged_usr_hooks ]]; then
    options+=("--hook-dir=$merged_usr_hooks")
  fi
  if [[ $slim -eq 1 ]]; then
    local pattern
    for pattern in 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/groff/*' 'path-exclude=/usr/share/info/*' \
      'path-exclude=/usr/share/linda/*' 'path-exclude=/usr/share/lintian/overrides/*' \
      'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
      'path-exclude=/usr/share/man/*'; do
      options+=("--dpkgopt=$pattern")
    done
  fi
  local -a mirrors
  mapfile -t mirrors < <(mirror_lines "$suite")

  say "making $name: mmdebstrap --variant=minbase $suite${flavour:+ (dpkg path excludes)}"
  local mount
  container="$(buildah from --quiet scratch)"
  mount="$(buildah mount "$container")"
  # The tarball straight into the new image's root; /dev is the runtime's, as in Debian's images.
  mmdebstrap "${options[@]}" "$suite" - "${mirrors[@]}" |
    tar --extract --file=- --directory="$mount" --numeric-owner --preserve-permissions \
      --xattrs --xattrs-include='*' --exclude='./dev/*'
  buildah umount "$container" >/dev/null
  buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash \
    --label "org.opencontainers.image.description=Debian $suite$flavour, made locally by mmdebstrap (deploy/build-image.sh)" \
    "$container"
  buildah commit --quiet --rm "$container" "$name" >/dev/null
  container=""
  say "made $name"
}

work="$(mktemp -d)"
container=""
cleanup() {
  if [[ -n $container ]]; then
    buildah rm "$container" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

started=$SECONDS
mapfile -t bases < <(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$dockerfile" | sort -u)
[[ ${#bases[@]} -gt 0 ]] || die "no FROM in $dockerfile"
for base in "${bases[@]}"; do
  if [[ $rebuild_base -eq 1 ]] || ! image_exists "$base"; then
    make_base "$base"
  else
    say "using $base as it is (--rebuild-base to make it again)"
  fi
done
bases_done=$SECONDS
say "base images: $((bases_done - started)) s"

# --pull=never: the bases are the local ones just checked, never a registry's.
# --layers: the package layer is cached, so a source change does not install the packages again.
buildah bud --isolation chroot --pull=never --layers \
  -f "$dockerfile" --ignorefile "$root/deploy/Dockerfile.dockerignore" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -t "$image" "$root"
say "image build: $((SECONDS - bases_done)) s"
buildah images "$image"
say "built $image in $((SECONDS - started)) s; test it with: node --test test/integration/image.test.mjs"
