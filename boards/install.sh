#!/bin/sh
# Offline installer of a partnner-tf edge bundle: check every file's hash, make a venv, install
# the bundled wheels with no index, and install the systemd unit when systemd runs here.
# Usage: sh install.sh [--no-service]      (PYTHON=python3.11 sh install.sh to pick the Python)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
SERVICE=yes
for arg in "$@"; do
    case "$arg" in
        --no-service) SERVICE=no ;;
        *) echo "install.sh: unknown option $arg (expected --no-service)" >&2; exit 2 ;;
    esac
done

say() { echo "partnner-install: $*"; }
die() { echo "partnner-install: error: $*" >&2; exit 1; }

# 1. Every file as it was bundled: a truncated copy or a flipped bit stops here.
command -v sha256sum >/dev/null || die "sha256sum is missing (coreutils)"
sha256sum --check --quiet --strict SHA256SUMS || die "files differ from SHA256SUMS: the bundle is corrupt; copy it again"
say "all $(wc -l < SHA256SUMS) files match SHA256SUMS"

# 2. The Python the wheels were chosen for.
PY=${PYTHON:-python3}
WANT=$(sed -n 's/^python=//p' bundle.env)
HAVE=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "$PY does not run"
[ "$HAVE" = "$WANT" ] || die "this bundle's wheels are for Python $WANT; $PY is $HAVE (set PYTHON=python$WANT)"
ARCH=$(sed -n 's/^arch=//p' bundle.env)
[ "$(uname -m)" = "$ARCH" ] || die "this bundle is for $ARCH; this machine is $(uname -m)"

# 3. A fresh venv, installed from the bundle alone (no config file may add an index).
rm -rf venv
"$PY" -m venv venv || die "$PY -m venv failed (on Debian: apt-get install python3-venv)"
PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= PIP_CONSTRAINT= \
    venv/bin/python -m pip install --quiet --no-index --disable-pip-version-check \
    --find-links "$HERE/wheels" "partnner-tf[edge]" || die "offline install failed"
venv/bin/python -c "import partnner_tf.runtime.edge, sys; assert 'tensorflow' not in sys.modules" \
    || die "the installed runtime does not import"
say "installed $(venv/bin/partnner --version 2>/dev/null) into $HERE/venv"
mkdir -p logs

# 4. The service, where systemd runs and we may write its units.
UNIT=partnner-edge.service
if [ "$SERVICE" = yes ] && [ -d /run/systemd/system ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    sed -e "s|@DIR@|$HERE|g" -e "s|@USER@|$(id -un)|g" partnner-edge.service.in > "$UNIT"
    $SUDO install -m 0644 "$UNIT" /etc/systemd/system/$UNIT || die "cannot install /etc/systemd/system/$UNIT"
    $SUDO systemctl daemon-reload
    say "installed /etc/systemd/system/$UNIT (start it: systemctl enable --now $UNIT)"
else
    say "no systemd here: run the service with $HERE/run.sh"
fi
