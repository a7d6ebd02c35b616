#!/usr/bin/env bash
# Install the system tools archc uses when missing: graphviz (`dot`) and chromium.
# Needs root (or passwordless sudo) and apt; otherwise prints what to install and carries on:
# archc writes .dot files without graphviz, and the browser test skips without chromium.
set -u
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo="none"; fi
if [ "$sudo" = "none" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: please install ${missing[*]} with your package manager (e.g. apt-get install ${missing[*]})." >&2
  exit 0
fi
echo "installing ${missing[*]} with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null 2>&1
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || echo "warning: apt-get could not install ${missing[*]}; continuing without" >&2
exit 0
