#!/usr/bin/env bash
# Builds the Kubernetes server binaries from Debian bookworm's `kubernetes` source package with
# Debian's Go, offline. Run by `kinit bundle create --source lab`; the caller caches the output
# directory keyed by the source tarball's checksum and the stamped version, so this runs once
# per machine and version.
#
# usage: build-kubernetes.sh SOURCE_TARBALL OUT_DIR VERSION
#   VERSION is stamped into the binaries (`--version`); the source is v1.20.2, and a different
#   patch version is only used to test upgrades between two builds of the same source.
set -euo pipefail
tarball=$1 out=$2 version=$3

export PATH=/usr/lib/go-1.19/bin:$PATH
command -v go >/dev/null || { echo "go 1.19 not found: apt-get install golang-1.19-go rsync" >&2; exit 1; }
command -v rsync >/dev/null || { echo "rsync not found: apt-get install rsync" >&2; exit 1; }

work=$(mktemp -d "${out%/}.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$tarball"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)

cd "$src"
# Without a git checkout the build scripts read the version from these variables.
export KUBE_GIT_VERSION=$version
export KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
export KUBE_GIT_TREE_STATE=clean
export KUBE_GIT_MAJOR=1
export KUBE_GIT_MINOR=20
export CGO_ENABLED=0
export GOFLAGS=-mod=vendor
export GOCACHE=${GOCACHE:-/var/cache/kinit/go-build}
export KUBE_BUILD_PLATFORMS=linux/amd64
# Strip symbols: the binaries shrink by about 30 % and bundles with them.
export GOLDFLAGS="-s -w"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy cmd/kubeadm cmd/kubectl" >&2

mkdir -p "$out.tmp"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm kubectl; do
  cp "_output/local/bin/linux/amd64/$b" "$out.tmp/$b"
done
# The pause source ships with the tree; the lab's pause image is built from it.
cp build/pause/linux/pause.c "$out.tmp/pause.c"
rm -rf "$out"
mv "$out.tmp" "$out"
