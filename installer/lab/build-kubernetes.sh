#!/usr/bin/env bash
# Builds the Kubernetes server binaries from Debian bookworm's `kubernetes` source package
# (the complete upstream v1.20.2 tree with vendor/) with Debian's Go, offline. Run by
# `kinit bundle create --source lab`, which caches the output per source checksum and version.
#
# usage: build-kubernetes.sh SOURCE_TARBALL TREE OUT_DIR VERSION
#   TREE     where the source is unpacked; kept between builds, so that Go's build cache
#            (inside it) makes a second build of another VERSION mostly a relink
#   VERSION  stamped into the binaries and `--version`; the source is v1.20.2, and another
#            patch version is only used to test upgrades between two builds of the same source
set -euo pipefail
tarball=$1 tree=$2 out=$3 version=$4

export PATH=/usr/lib/go-1.19/bin:$PATH
command -v go >/dev/null || { echo "go 1.19 not found: apt-get install golang-1.19-go" >&2; exit 1; }
for tool in make rsync; do
  command -v $tool >/dev/null || { echo "$tool not found: apt-get install $tool" >&2; exit 1; }
done

if [[ ! -f $tree/.kinit-unpacked ]]; then
  rm -rf "$tree"
  mkdir -p "$tree"
  tar -C "$tree" --strip-components=1 -xzf "$tarball"
  touch "$tree/.kinit-unpacked"
fi

cd "$tree"
# Without a git checkout the build scripts take the version from these variables.
export KUBE_GIT_VERSION=$version
export KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
export KUBE_GIT_TREE_STATE=clean
export KUBE_GIT_MAJOR=1
export KUBE_GIT_MINOR=20
export CGO_ENABLED=0
export GOFLAGS=-mod=vendor
export KUBE_BUILD_PLATFORMS=linux/amd64
if [[ $version != v1.20.2 ]]; then
  # The source is a `git archive` export: hack/lib/version.sh hard-codes v1.20.2 over the
  # variables above. A version file is the one input it reads before that.
  cat > "$tree/.kinit-version" <<EOF
KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'
KUBE_GIT_TREE_STATE='archive'
KUBE_GIT_VERSION='$version'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
EOF
  export KUBE_GIT_VERSION_FILE=$tree/.kinit-version
fi
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm kubectl)
make WHAT="${binaries[*]/#/cmd/}" >&2

rm -rf "$out.partial"
mkdir -p "$out.partial"
for b in "${binaries[@]}"; do
  cp "_output/local/bin/linux/amd64/$b" "$out.partial/$b"
done
rm -rf "$out"
mv "$out.partial" "$out"
