#!/bin/sh
# Test setup for tests/boards: the flash tests start a real OpenSSH server (sshd) on loopback.
# Installs Debian's openssh-server when sshd is missing and we are root; otherwise says why not
# (those tests then skip with that reason). Never starts a system-wide sshd.
set -u
if [ -x /usr/sbin/sshd ]; then
    echo "setup-sshd: /usr/sbin/sshd present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-sshd: sshd missing and not root: the flash tests will skip (apt-get install openssh-server)"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "setup-sshd: sshd missing and no apt-get: the flash tests will skip"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# A policy-rc.d answering 101 keeps the package from starting a system-wide sshd on port 22:
# the tests run their own, on loopback, on a random port.
OWN_POLICY=no
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && OWN_POLICY=yes
fi
apt-get update -qq >/dev/null 2>&1 || true
if apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null 2>&1; then
    echo "setup-sshd: installed openssh-server"
else
    echo "setup-sshd: installing openssh-server failed: the flash tests will skip"
fi
[ "$OWN_POLICY" = yes ] && rm -f /usr/sbin/policy-rc.d
exit 0
