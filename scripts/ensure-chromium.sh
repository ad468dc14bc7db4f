#!/usr/bin/env bash
# Install Debian's Chromium for the UI test (tests/ui) if it is missing. Never a browser download by
# Playwright: the test drives /usr/bin/chromium through playwright's executable_path.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  chromium --version 2>/dev/null || true
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing; install Debian's package as root: apt-get install -y chromium" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
chromium --version 2>/dev/null || true
