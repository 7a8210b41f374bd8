#!/usr/bin/env bash
# Install edge-rbmlp as a systemd service on Raspberry Pi OS bookworm (64-bit or 32-bit) or plain
# Debian / Ubuntu (arm64, armhf, amd64). Idempotent: run it again after an update; it only does what
# is missing and never overwrites the config.
#
#   sudo device/install.sh [--camera] [--wheel FILE] [--dry-run] [--prefix DIR] [--config-dir DIR] [--source DIR]
#
#   --camera      also grant the service the camera devices and the video group (systemd drop-in),
#                 install python3-picamera2 (Raspberry Pi OS only: its archive has it) and python3-av
#                 (USB webcams through V4L2), the [mqtt] client (paho-mqtt), and enable [camera]
#   --wheel FILE  install this prebuilt wheel (make wheels) instead of building from source; without it
#                 a wheel for this machine found beside this script or in the checkout's dist/ is used
#   --dry-run     print every step it would take, change nothing (no root needed)
#   --prefix      where the venv goes                      (default /opt/edge-rbmlp)
#   --config-dir  where config.toml and env go             (default /etc/edge-rbmlp)
#   --source      the edge-rbmlp checkout to pip install   (default: this script's checkout)
#   --models-dir  where your own models go                 (default /var/lib/edge-rbmlp/models)
#
# Custom models: copy a model.rbm (python -m train fit writes it 0644) into the models directory and
# add its path to [server] models in config.toml, then `sudo systemctl reload edge-rbmlp`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$(cd "$HERE/.." && pwd)"
PREFIX=/opt/edge-rbmlp
CONF_DIR=/etc/edge-rbmlp
UNIT_DIR=/etc/systemd/system
MODELS_DIR=/var/lib/edge-rbmlp/models
DRY=0
CAMERA=0
WHEEL=""
# for the tests: another os-release file and dpkg architecture than this machine's
OS_RELEASE=${EDGE_RBMLP_OS_RELEASE:-/etc/os-release}

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --camera) CAMERA=1 ;;
    --wheel) WHEEL="$2"; shift ;;
    --prefix) PREFIX="$2"; shift ;;
    --config-dir) CONF_DIR="$2"; shift ;;
    --source) SOURCE="$2"; shift ;;
    --unit-dir) UNIT_DIR="$2"; shift ;;
    --models-dir) MODELS_DIR="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "==> $*"; }
run() {
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo device/install.sh), or with --dry-run to see the steps" >&2
  exit 1
fi

# -- which system is this? ------------------------------------------------------------------------------
os_id="$(. "$OS_RELEASE" 2>/dev/null && echo "${ID:-unknown}")"
os_like="$(. "$OS_RELEASE" 2>/dev/null && echo "${ID_LIKE:-}")"
codename="$(. "$OS_RELEASE" 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")"
arch=${EDGE_RBMLP_DPKG_ARCH:-$(dpkg --print-architecture 2>/dev/null || uname -m)}
# Raspberry Pi OS: ID=raspbian on 32-bit; on 64-bit ID=debian with the Raspberry Pi archive configured
if [ "$os_id" = raspbian ] || [ -e "${EDGE_RBMLP_RPI_ISSUE:-/etc/rpi-issue}" ]; then
  family="Raspberry Pi OS"
elif [ "$os_id" = debian ] || [ "$os_id" = ubuntu ] || [[ " $os_like " == *" debian "* ]]; then
  family="Debian"
else
  echo "install.sh: this is '$os_id' ($OS_RELEASE): only Raspberry Pi OS, Debian and Ubuntu (apt) are supported" >&2
  exit 1
fi
say "system: $family ($os_id $codename, $arch)"
case "$arch" in
  arm64|armhf|amd64) ;;
  *) say "warning: $arch is untested; the native engine builds from source with its portable kernels" ;;
esac

APT_PACKAGES=(python3 python3-venv python3-pip)
if [ "$CAMERA" = 1 ]; then
  APT_PACKAGES+=(python3-av)  # v4l2:/dev/videoN and file:VIDEO camera sources (PyAV, Debian's FFmpeg)
  if [ "$family" = "Raspberry Pi OS" ]; then
    APT_PACKAGES+=(python3-picamera2)  # the Pi camera (libcamera): only in the Raspberry Pi archive
  else
    say "note: python3-picamera2 is only in Raspberry Pi OS's archive: on $os_id the camera is a USB webcam"
    say "      (source = \"v4l2:/dev/video0\" in [camera]) or a video file; the Pi camera needs Raspberry Pi OS"
  fi
fi

# -- a prebuilt wheel for this machine? ------------------------------------------------------------------
# the wheel's tags against the system python's (pip's own tag logic, as pip install would decide)
wheel_fits() {
  python3 - "$1" <<'EOF' 2>/dev/null
import sys
from pip._vendor.packaging.tags import sys_tags
from pip._vendor.packaging.utils import parse_wheel_filename
name = sys.argv[1].rsplit("/", 1)[-1]
supported = set(sys_tags())
sys.exit(0 if any(t in supported for t in parse_wheel_filename(name)[3]) else 1)
EOF
}
if [ -n "$WHEEL" ]; then
  [ -f "$WHEEL" ] || { echo "install.sh: --wheel $WHEEL: no such file" >&2; exit 1; }
  WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
  if command -v python3 >/dev/null && ! wheel_fits "$WHEEL"; then
    echo "install.sh: $(basename "$WHEEL") does not fit this machine's python3 ($(python3 -V 2>&1), $arch)" >&2
    exit 1
  fi
else
  for w in "$HERE"/edge_rbmlp-*.whl "$SOURCE"/dist/edge_rbmlp-*.whl; do
    if [ -f "$w" ] && command -v python3 >/dev/null && wheel_fits "$w"; then WHEEL="$w"; break; fi
  done
fi
if [ -n "$WHEEL" ]; then
  say "prebuilt wheel: $WHEEL (no compiler needed)"
else
  say "no prebuilt wheel for this machine: the native engine is built from $SOURCE (about a minute; make wheels makes one)"
  APT_PACKAGES+=(python3-dev build-essential)
fi
EXTRAS=""
[ "$CAMERA" = 1 ] && EXTRAS="[mqtt]"  # paho-mqtt for [mqtt]: the readings to Home Assistant
if [ -n "$WHEEL" ]; then PIP_TARGET="$WHEEL$EXTRAS"; else PIP_TARGET="$SOURCE$EXTRAS"; fi

say "1/7 apt packages (${APT_PACKAGES[*]})"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  say "    all installed"
fi

say "2/7 venv with the system site packages (the camera libraries come from apt)"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  run mkdir -p "$PREFIX"
  run python3 -m venv --system-site-packages "$PREFIX/venv"
else
  say "    $PREFIX/venv exists"
fi

say "3/7 edge-rbmlp from ${WHEEL:-$SOURCE}"
# --find-links: dependency wheels put beside the wheel are used first (an offline install)
if [ -n "$WHEEL" ]; then
  run "$PREFIX/venv/bin/pip" install --disable-pip-version-check --upgrade --find-links "$(dirname "$WHEEL")" "$PIP_TARGET"
else
  run "$PREFIX/venv/bin/pip" install --disable-pip-version-check --upgrade "$PIP_TARGET"
fi

say "4/7 config in $CONF_DIR"
run install -d -m 0755 "$CONF_DIR"
if [ ! -f "$CONF_DIR/config.toml" ]; then
  run install -m 0644 "$HERE/config.toml" "$CONF_DIR/config.toml"
  if [ "$CAMERA" = 1 ]; then
    # the camera loop lives in one process: one worker
    run sed -i -e 's/^enabled = false/enabled = true/' -e 's/^workers = [0-9]*/workers = 1/' "$CONF_DIR/config.toml"
    if [ "$family" != "Raspberry Pi OS" ]; then
      run sed -i -e 's|^source = "picamera2"|source = "v4l2:/dev/video0"|' "$CONF_DIR/config.toml"
    fi
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

say "5/7 models directory $MODELS_DIR (your own .rbm files; world-readable: the service runs as a dynamic user)"
run install -d -m 0755 "$MODELS_DIR"

say "6/7 systemd unit"
run install -d -m 0755 "$UNIT_DIR"
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

say "7/7 enable and (re)start"
# booted with systemd: sd_booted()'s test (the tests point EDGE_RBMLP_SD_BOOTED at a directory of their own)
if [ "$DRY" = 1 ] || [ -d "${EDGE_RBMLP_SD_BOOTED:-/run/systemd/system}" ]; then
  run systemctl daemon-reload
  run systemctl enable edge-rbmlp.service
  run systemctl restart edge-rbmlp.service
else
  # a container or chroot: nothing to enable now; on a booted system the same three commands start it
  say "    systemd is not running here: later, sudo systemctl daemon-reload && sudo systemctl enable --now edge-rbmlp"
fi

say "done: the service listens on http://127.0.0.1:8080/ (see $CONF_DIR/config.toml);"
say "      journalctl -u edge-rbmlp -f shows its log; systemctl reload edge-rbmlp reloads changed models"
cat <<EOF
==> From another machine (a laptop on the same network):
      1. a token:   echo "EDGE_RBMLP_TOKEN=\$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')" | sudo tee -a $CONF_DIR/env
      2. listen on every interface: host = "0.0.0.0" under [server] in $CONF_DIR/config.toml
      3. sudo systemctl restart edge-rbmlp
      4. open http://$(hostname 2>/dev/null || echo HOST).local:8080/#token=THE_TOKEN (or http://<its IP>:8080/#token=...;
         the page keeps the token), or from a shell:
         curl -H "Authorization: Bearer THE_TOKEN" -F file=@digit.png http://HOST:8080/classify/mnist
==> Your own models: copy model.rbm to $MODELS_DIR/NAME.rbm, add "$MODELS_DIR/NAME.rbm" to [server] models
      in $CONF_DIR/config.toml, then sudo systemctl reload edge-rbmlp
EOF
