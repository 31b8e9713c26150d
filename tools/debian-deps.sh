#!/usr/bin/env bash
# Install the Debian packages named as arguments when their commands are missing.
# Runs apt-get as root (or through sudo); otherwise says what to install.
set -euo pipefail
declare -A cmd=([xorriso]=xorriso [p7zip-full]=7z [libarchive-tools]=bsdtar [genisoimage]=isoinfo [systemd]=systemd-analyze)
missing=()
for pkg in "$@"; do
  command -v "${cmd[$pkg]:-$pkg}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "discarchive: please install these Debian packages first: ${missing[*]}" >&2; exit 2
fi
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
