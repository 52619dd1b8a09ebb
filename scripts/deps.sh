#!/usr/bin/env bash
# Installs the Debian packages sdprune needs to build, test and run (only those missing).
# Needs root for apt-get; prints what is missing otherwise.
set -euo pipefail
packages=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev libjansson-dev libcyaml-dev libyaml-dev
  libpcre2-dev libutf8proc-dev libzip-dev libpng-dev libhdf5-dev zlib1g-dev libopenmpi-dev openmpi-bin
  python3 python3-numpy python3-h5py python3-pandas python3-matplotlib)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages and not root: run 'sudo apt-get install ${missing[*]}'" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
