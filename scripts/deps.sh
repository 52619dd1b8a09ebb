#!/usr/bin/env bash
# Installs the Debian packages sdprune needs to build, test and run (only those missing).
# Needs root for apt-get; prints what is missing otherwise. slurm-wlm and munge are for tests/test_slurm.sh
# (it starts its own daemons); their postinst scripts start services through invoke-rc.d and exit 1 when a
# start fails, so during the install a policy-rc.d that denies every start (as Debian's container images
# ship) keeps a machine without an init system, or CI, from starting (or failing on) munged/slurmd.
set -euo pipefail
packages=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev libjansson-dev libcyaml-dev libyaml-dev
  libpcre2-dev libutf8proc-dev libzip-dev libpng-dev libhdf5-dev zlib1g-dev libopenmpi-dev openmpi-bin
  python3 python3-numpy python3-h5py python3-pandas python3-matplotlib)
# Only tests need these, installed as root and not required otherwise: slurm-wlm and munge for tests/test_slurm.sh,
# valgrind for tests/test_valgrind.sh, clang and its OpenMP for the libFuzzer harnesses (tests/fuzz/run.sh).
test_only=(slurm-wlm munge valgrind clang libomp-dev)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() missing_test=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${test_only[@]}"; do installed "$p" || missing_test+=("$p"); done
[ ${#missing[@]} -eq 0 ] && [ ${#missing_test[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: not root, so without ${missing_test[*]} (the tests that need them skip): 'sudo apt-get install ${missing_test[*]}'" >&2
    exit 0
  fi
  echo "deps: missing packages and not root: run 'sudo apt-get install ${missing[*]} ${missing_test[*]}'" >&2
  exit 1
fi
missing+=("${missing_test[@]}")
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then # ours only for the install, removed after it whatever happens
  printf '#!/bin/sh\n# scripts/deps.sh: no service starts during its apt-get install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}" >/dev/null
