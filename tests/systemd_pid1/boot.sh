#!/bin/sh
# PID 1 of fresh PID, mount, UTS, IPC and cgroup namespaces, started by tests/test_systemd_pid1.py as
#   unshare --pid --kill-child --mount --propagation private --uts --ipc --cgroup sh boot.sh
# after the test moved itself into delegated sub-cgroups. It builds a throw-away root on a tmpfs (the
# host's /usr, the repository and the venv read-only; copies of /etc; fresh /run, /tmp, /var, /dev,
# /proc; /sys read-only with this cgroup namespace's own cgroup hierarchies), pivots into it and execs
# the real systemd as PID 1 (`container=` set, as systemd-nspawn does). Nothing here is visible to the
# host: every mount is private to this mount namespace, and killing PID 1 ends everything.
#
# Input (environment, from the test):
#   EDGE_ROOT     an empty host directory: the new root's mount point
#   EDGE_FILES    a directory laid over the new root (units, config, the /opt venv, ...)
#   EDGE_BINDS    lines "SRC DST": read-only bind mounts of host paths at DST in the new root
#   EDGE_CGROUPS  lines "NAME FSTYPE OPTIONS": cgroup file systems mounted at /sys/fs/cgroup/NAME
#                 ("." = /sys/fs/cgroup itself, a unified host); OPTIONS "-" for none
#   EDGE_LDCONF   optional: a library directory added to the new root's ld.so cache
#   EDGE_CONSOLE  a pty (the test reads its other side) for /dev/console: systemd logs there
#   EDGE_SYSTEMD  the systemd binary;  EDGE_UNIT  the unit systemd boots into
set -eu
umask 022

say() { echo "boot.sh: $*" >&2; }
[ "$$" = 1 ] || { say "not PID 1 of a new PID namespace (pid $$)"; exit 90; }
R=$EDGE_ROOT

# belt and braces: unshare made every mount private already; nothing made here reaches the host
mount --make-rprivate /

ro_bind() {  # ro_bind SRC DST (DST relative to the new root)
  if [ -d "$1" ]; then mkdir -p "$R/$2"; else mkdir -p "$(dirname "$R/$2")"; : > "$R/$2"; fi
  mount --bind "$1" "$R/$2"
  mount -o remount,bind,ro "$R/$2"
}

mount -t tmpfs -o mode=0755,size=256m edge-pid1-root "$R"
mkdir -p "$R/etc" "$R/proc" "$R/sys" "$R/dev" "$R/run" "$R/tmp" "$R/var/tmp" "$R/var/lib" "$R/var/log" \
         "$R/opt" "$R/root" "$R/home" "$R/srv" "$R/mnt"
chmod 1777 "$R/tmp" "$R/var/tmp"
chmod 0700 "$R/root"
ln -s ../run "$R/var/run"; ln -s ../run/lock "$R/var/lock"

# /usr read-only, the merged-/usr symlinks (or read-only binds on a split-/usr system)
ro_bind /usr usr
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"; elif [ -d "/$d" ]; then ro_bind "/$d" "$d"; fi
done
# a minimal unit world: none of the distribution's units or generators (no udev, no journald, no
# sysctl, no getty...), only what EDGE_FILES brings; tmpfs over the read-only /usr bind, here only
for d in usr/lib/systemd/system usr/lib/systemd/system-generators usr/lib/systemd/system-environment-generators \
         usr/local/lib/systemd/system; do
  if [ -d "$R/$d" ]; then mount -t tmpfs -o mode=0755 edge-pid1-units "$R/$d"; fi
done

# /etc: a copy (systemd writes machine-id, hostname, ...; ConfigurationDirectory= creates in it)
cp -a /etc/. "$R/etc/"
rm -rf "$R/etc/systemd/system" "$R/etc/systemd/system-generators" "$R/etc/systemd/system-environment-generators" \
       "$R/etc/systemd/system.control" "$R/etc/fstab"
mkdir -p "$R/etc/systemd/system"
: > "$R/etc/fstab"

mount -t tmpfs -o mode=0755,nosuid,nodev edge-pid1-run "$R/run"

# lay the test's files over the root (modes as in EDGE_FILES; existing directories left as they are)
cp -R "$EDGE_FILES/." "$R/"

printf '%s\n' "${EDGE_BINDS:-}" | while read -r src dst; do
  [ -n "$src" ] || continue
  ro_bind "$src" "$dst"
done

if [ -n "${EDGE_LDCONF:-}" ]; then
  echo "$EDGE_LDCONF" > "$R/etc/ld.so.conf.d/00-edge-rbmlp-python.conf"
  ldconfig -X -r "$R"
fi

# /dev: a few nodes of the host's, a private devpts, the test's pty as the console, no kmsg
mount -t tmpfs -o mode=0755,nosuid,size=1m edge-pid1-dev "$R/dev"
for n in null zero full random urandom tty; do : > "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
: > "$R/dev/console"; mount --bind "${EDGE_CONSOLE:-/dev/null}" "$R/dev/console"
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev edge-pid1-shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"

# /proc of this PID namespace; /proc/sys read-only (no host sysctl is ever written from here)
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for p in sys sysrq-trigger; do [ -e "$R/proc/$p" ] || continue; mount --bind "$R/proc/$p" "$R/proc/$p"; mount -o remount,bind,ro "$R/proc/$p"; done

# /sys read-only; /sys/fs/cgroup: this cgroup namespace's hierarchies (rooted at the delegated sub-cgroups)
mount --bind /sys "$R/sys"
mount -o remount,bind,ro,nosuid,nodev,noexec "$R/sys"
printf '%s\n' "${EDGE_CGROUPS:-}" | while read -r name fstype opts; do
  [ "$name" = "." ] && { mount -t "$fstype" -o nosuid,nodev,noexec cgroup "$R/sys/fs/cgroup"; break; }
  [ -n "$name" ] || continue
  if ! mountpoint -q "$R/sys/fs/cgroup"; then mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup "$R/sys/fs/cgroup"; fi
  mkdir -p "$R/sys/fs/cgroup/$name"
  if [ "$opts" = "-" ]; then
    mount -t "$fstype" -o nosuid,nodev,noexec cgroup "$R/sys/fs/cgroup/$name"
  else
    mount -t "$fstype" -o "nosuid,nodev,noexec,$opts" cgroup "$R/sys/fs/cgroup/$name"
  fi
done
if mountpoint -q "$R/sys/fs/cgroup" && [ "$(stat -f -c %T "$R/sys/fs/cgroup")" = tmpfs ]; then
  mount -o remount,ro "$R/sys/fs/cgroup"
fi

cd "$R"
mkdir .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot

say "root ready; exec $EDGE_SYSTEMD"
exec env -i container=edge-rbmlp-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  "$EDGE_SYSTEMD" --system "--unit=$EDGE_UNIT" --log-target=console --log-level=info --log-color=no \
  --log-location=no --show-status=no
