#!/usr/bin/env bash
# Resolve the control-plane binaries into .tools/bin, building them from the Go module proxy when needed.
#
# Resolution order for each binary:
#   1. $TELECHAT_TOOLS_DIR/<binary>, when that variable names a folder (envtest assets, distro packages);
#   2. the cache: ${TELECHAT_CACHE_DIR:-~/.cache/telechat-operator}/tools/<component>-<version>/<binary>;
#   3. a build from Go modules into that cache (needs Go >= 1.26 and the module proxy).
# The repository's .tools/bin then holds symlinks, so every script and test uses one set of binaries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${TELECHAT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/telechat-operator}/tools
bindir=$root/.tools/bin
mkdir -p "$cache" "$bindir"

log() { printf '[tools] %s\n' "$*" >&2; }
die() {
  printf '[tools] ERROR: %s\n' "$*" >&2
  printf '[tools] To supply binaries by hand, put kube-apiserver, kube-controller-manager, kube-scheduler,\n' >&2
  printf '[tools] kubectl, etcd, kwok and helm in one folder and run: TELECHAT_TOOLS_DIR=/that/folder make tools\n' >&2
  exit 1
}

need_go() {
  command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH; Go >= 1.26 is needed to build $1"
  local v
  v=$(go env GOVERSION | sed 's/^go//')
  case "$v" in
    1.2[6-9]*|1.[3-9][0-9]*) ;;
    *) die "Go $v is too old to build $1 (need >= 1.26)" ;;
  esac
}

# link_or_build <component-dir> <build-function> <binaries...>
resolve() {
  local key=$1 builder=$2; shift 2
  local dir=$cache/$key missing=() b
  if [ -n "${TELECHAT_TOOLS_DIR:-}" ]; then
    for b in "$@"; do
      if [ -x "$TELECHAT_TOOLS_DIR/$b" ]; then
        ln -sfn "$TELECHAT_TOOLS_DIR/$b" "$bindir/$b"
      else
        missing+=("$b")
      fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    set -- "${missing[@]}"
  fi
  for b in "$@"; do
    if [ ! -x "$dir/$b" ]; then
      log "building $key (not in $dir); logs in $cache/$key.build.log"
      local started=$SECONDS
      if ! "$builder" "$dir" >"$cache/$key.build.log" 2>&1; then
        tail -n 30 "$cache/$key.build.log" >&2
        die "building $key failed; full log: $cache/$key.build.log"
      fi
      log "built $key in $((SECONDS - started)) s"
      break
    fi
  done
  for b in "$@"; do
    [ -x "$dir/$b" ] || die "$key was built but $b is missing in $dir"
    ln -sfn "$dir/$b" "$bindir/$b"
  done
}

# A throwaway module per component keeps the build outside the repository and reuses Go's module cache.
workdir() {
  local w=$cache/build/$1
  rm -rf "$w" && mkdir -p "$w" && printf '%s' "$w"
}

build_kube() {
  local out=$1 w minor
  need_go "Kubernetes $KUBE_VERSION"
  w=$(workdir "kube-$KUBE_VERSION")
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local staging_version=v0.${KUBE_VERSION#v1.}
  cd "$w"
  go mod init telechat-tools/kube >/dev/null
  go mod edit -go=1.26.0
  # k8s.io/kubernetes requires every staging module at v0.0.0 and points them at ./staging with replace
  # directives, which only its own build honours. Derive the list from that release's go.mod and pin each
  # to the published v0.<minor>.<patch>.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || { echo "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"; return 1; }
  local m
  for m in $(awk '/=> \.\/staging\/src\//{print $1}' "$gomod"); do
    go mod edit -replace "$m=$m@$staging_version"
  done
  go mod edit -require "k8s.io/kubernetes@$KUBE_VERSION"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION"
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$out.tmp"
  # One go build for all four commands shares one compile of the common packages.
  CGO_ENABLED=0 go build -mod=mod -trimpath -tags selinux,notest -ldflags "-s -w $ld" -o "$out.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  rm -rf "$out" && mv "$out.tmp" "$out"
  "$out/kube-apiserver" --version
}

build_etcd() {
  local out=$1 w
  need_go "etcd $ETCD_VERSION"
  w=$(workdir "etcd-$ETCD_VERSION")
  cd "$w"
  # `go install go.etcd.io/etcd/...@version` fails on etcd's replace directives; as a dependency the
  # server module (whose root package is main) builds.
  go mod init telechat-tools/etcd >/dev/null
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  mkdir -p "$out.tmp"
  CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
  rm -rf "$out" && mv "$out.tmp" "$out"
  "$out/etcd" --version
}

build_kwok() {
  local out=$1 w
  need_go "kwok $KWOK_VERSION"
  w=$(workdir "kwok-$KWOK_VERSION")
  cd "$w"
  go mod init telechat-tools/kwok >/dev/null
  go get "sigs.k8s.io/kwok@$KWOK_VERSION"
  mkdir -p "$out.tmp"
  CGO_ENABLED=0 go build -mod=mod -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    -o "$out.tmp/kwok" sigs.k8s.io/kwok/cmd/kwok
  rm -rf "$out" && mv "$out.tmp" "$out"
  "$out/kwok" --version || true
}

build_helm() {
  local out=$1 w kv kmaj kmin
  need_go "helm $HELM_VERSION"
  w=$(workdir "helm-$HELM_VERSION")
  cd "$w"
  go mod init telechat-tools/helm >/dev/null
  go get "helm.sh/helm/v3@$HELM_VERSION"
  # Helm derives its default Kubernetes version from the client-go it was built with (as its Makefile
  # does); without these flags `helm template` assumes Kubernetes v1.20.
  kv=$(go list -m -f '{{.Version}}' k8s.io/client-go)
  kmaj=1; kmin=$(echo "$kv" | cut -d. -f2)  # client-go v0.N.x ships with Kubernetes v1.N
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kmaj -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kmin"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kmaj -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kmin"
  mkdir -p "$out.tmp"
  CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ld" -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm
  rm -rf "$out" && mv "$out.tmp" "$out"
  "$out/helm" version
}

main() {
  resolve "etcd-$ETCD_VERSION" build_etcd etcd
  resolve "kwok-$KWOK_VERSION" build_kwok kwok
  resolve "helm-$HELM_VERSION" build_helm helm
  resolve "kube-$KUBE_VERSION" build_kube kube-apiserver kube-controller-manager kube-scheduler kubectl
  log "binaries ready in $bindir:"
  ls -l "$bindir" | awk 'NR>1{print "  " $9 " -> " $11}' >&2
}

main "$@"
