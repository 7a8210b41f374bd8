#!/usr/bin/env bash
# Install edge-rbmlp as a systemd service on Raspberry Pi OS (Debian bookworm). Idempotent:
# run it again after an update; it only does what is missing and never overwrites the config.
#
#   sudo device/install.sh [--camera] [--dry-run] [--prefix DIR] [--config-dir DIR] [--source DIR]
#
#   --camera      also grant the service the camera devices and the video group (systemd drop-in; V4L2
#                 webcams through python3-av), install the [mqtt] client (paho-mqtt) and enable [camera]
#   --dry-run     print every step it would take, change nothing (no root needed)
#   --prefix      where the venv goes                      (default /opt/edge-rbmlp)
#   --config-dir  where config.toml and env go             (default /etc/edge-rbmlp)
#   --source      the edge-rbmlp checkout to pip install   (default: this script's checkout)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$(cd "$HERE/.." && pwd)"
PREFIX=/opt/edge-rbmlp
CONF_DIR=/etc/edge-rbmlp
UNIT_DIR=/etc/systemd/system
DRY=0
CAMERA=0
APT_PACKAGES=(python3 python3-venv python3-pip python3-dev build-essential python3-picamera2)

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --camera) CAMERA=1 ;;
    --prefix) PREFIX="$2"; shift ;;
    --config-dir) CONF_DIR="$2"; shift ;;
    --source) SOURCE="$2"; shift ;;
    --unit-dir) UNIT_DIR="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$CAMERA" = 1 ]; then
  APT_PACKAGES+=(python3-av)  # v4l2:/dev/videoN and file:VIDEO camera sources (PyAV, Debian's FFmpeg)
  PIP_TARGET="$SOURCE[mqtt]"  # paho-mqtt for [mqtt]: the readings to Home Assistant
else
  PIP_TARGET="$SOURCE"
fi

say() { echo "==> $*"; }
run() {
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo device/install.sh), or with --dry-run to see the steps" >&2
  exit 1
fi

codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")"
if [ "$codename" != bookworm ]; then
  say "warning: this is written for Raspberry Pi OS bookworm; this system is '$codename'"
fi

say "1/6 apt packages (${APT_PACKAGES[*]})"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  run apt-get update
  run apt-get install -y --no-install-recommends "${missing[@]}"
else
  say "    all installed"
fi

say "2/6 venv with the system site packages (picamera2 and libcamera come from apt)"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  run mkdir -p "$PREFIX"
  run python3 -m venv --system-site-packages "$PREFIX/venv"
else
  say "    $PREFIX/venv exists"
fi

say "3/6 edge-rbmlp from $SOURCE (builds the native engine)"
run "$PREFIX/venv/bin/pip" install --disable-pip-version-check --upgrade "$PIP_TARGET"

say "4/6 config in $CONF_DIR"
run install -d -m 0755 "$CONF_DIR"
if [ ! -f "$CONF_DIR/config.toml" ]; then
  run install -m 0644 "$HERE/config.toml" "$CONF_DIR/config.toml"
  if [ "$CAMERA" = 1 ]; then
    # the camera loop lives in one process: one worker
    run sed -i -e 's/^enabled = false/enabled = true/' -e 's/^workers = [0-9]*/workers = 1/' "$CONF_DIR/config.toml"
  fi
else
  say "    $CONF_DIR/config.toml exists: kept as it is"
fi
if [ ! -f "$CONF_DIR/env" ]; then
  # the API token and the MQTT password live here, readable by root only (systemd reads it before
  # dropping privileges)
  run install -m 0600 /dev/null "$CONF_DIR/env"
  if [ "$DRY" = 0 ]; then
    echo "# EDGE_RBMLP_TOKEN=<a long random string>   (required to listen beyond loopback)" > "$CONF_DIR/env"
  fi
fi
if [ "$DRY" = 1 ] || ! grep -q EDGE_RBMLP_MQTT_PASSWORD "$CONF_DIR/env"; then
  say "    $CONF_DIR/env: EDGE_RBMLP_MQTT_PASSWORD= is the [mqtt] password (kept out of config.toml)"
  if [ "$DRY" = 0 ]; then
    echo "# EDGE_RBMLP_MQTT_PASSWORD=<the broker password of [mqtt] username>" >> "$CONF_DIR/env"
  fi
fi

say "5/6 systemd unit"
run install -m 0644 "$SOURCE/systemd/edge-rbmlp.service" "$UNIT_DIR/edge-rbmlp.service"
if [ "$CAMERA" = 1 ]; then
  # the drop-in gives the (dynamic) service user the video group and the V4L2/media devices
  if ! getent group video >/dev/null; then
    run groupadd --system video
  fi
  run install -d -m 0755 "$UNIT_DIR/edge-rbmlp.service.d"
  run install -m 0644 "$SOURCE/systemd/edge-rbmlp.service.d/camera.conf" "$UNIT_DIR/edge-rbmlp.service.d/camera.conf"
elif [ -f "$UNIT_DIR/edge-rbmlp.service.d/camera.conf" ]; then
  run rm -f "$UNIT_DIR/edge-rbmlp.service.d/camera.conf"
fi
if [ "$PREFIX" != /opt/edge-rbmlp ]; then
  run sed -i "s|/opt/edge-rbmlp/venv|$PREFIX/venv|" "$UNIT_DIR/edge-rbmlp.service"
fi

say "6/6 enable and (re)start"
run systemctl daemon-reload
run systemctl enable edge-rbmlp.service
run systemctl restart edge-rbmlp.service

say "done: the service listens on http://127.0.0.1:8080/ (see $CONF_DIR/config.toml);"
say "      journalctl -u edge-rbmlp -f shows its log; systemctl reload edge-rbmlp reloads changed models"
