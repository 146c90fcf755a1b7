#!/usr/bin/env bash
# The Debian packages. CRIU on this machine is a Debian package >= 4.2 that
# passes `criu check` and that the project finds. `dpkg-buildpackage -b -uc
# -us` builds nucleus-migrate from a copy of the tree; the package installs
# into a throwaway Debian 12 root (an overlay over a debootstrap root cached
# under /var/cache/nucleus-migrate/deb-root), where its programs run, the
# unit verifies and is enabled, sshd takes the drop-in, and
# nucleus-provision accepts the user the package made; a reinstall, a
# removal and a purge leave nothing but what policy keeps. Also: a `meson
# install` to /usr/local puts the sshd drop-in where sshd reads it.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
t_require_root

SRC=${NM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CACHE=/var/cache/nucleus-migrate
CRIU_DEBS=$CACHE/criu-deb
BASE=$CACHE/deb-root/bookworm
MIRROR=${NM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CLEAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin
BASE_RECIPE=1 # bump when the base root's making changes

T=$(mktemp -d /var/tmp/nm-deb-package.XXXXXX)
ROOT=$T/root
cleanup() {
	local rc=$?
	mountpoint -q "$ROOT" && umount -R "$ROOT"
	if [ "$rc" -ne 0 ] && [ -n "${FX_KEEP_ON_FAIL:-}" ]; then
		t_log "kept $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

in_root() { chroot "$ROOT" env -i PATH="$CLEAN_PATH" HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# --------------------------------------------------------------- CRIU here
t_log "CRIU on this machine is a Debian package"
v=$(dpkg-query -W -f='${Status} ${Version}' criu 2>/dev/null) || t_fail "criu is not a Debian package here (run deploy/install-deps)"
[[ $v == "install ok installed "* ]] || t_fail "criu package state: $v"
v=${v#install ok installed }
dpkg --compare-versions "$v" ge 4.2 || t_fail "dpkg -s criu: version $v < 4.2"
grep -qx "Version: $v" <<<"$(dpkg -s criu)" || t_fail "dpkg -s criu does not show version $v"
t_assert_eq "$(dpkg-query -S /usr/sbin/criu | cut -d: -f1)" criu "owner of /usr/sbin/criu"
[ "$(dpkg-query -W -f='${Status}' libcriu-dev 2>/dev/null)" = "install ok installed" ] || t_fail "libcriu-dev is not installed"
out=$(/usr/sbin/criu check 2>&1) || t_fail "criu check fails: $(tail -n 3 <<<"$out")"
# the project's own search finds the package's binary, no older copy first
t_assert_eq "$(t_criu)" /usr/sbin/criu "the criu the tests use"
t_assert_eq "$(pkg-config --variable=libdir criu)" "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)" "libcriu's pkg-config libdir"
for f in "$CRIU_DEBS"/criu_*.deb "$CRIU_DEBS"/libcriu2_*.deb; do
	[ -f "$f" ] || t_fail "no CRIU packages in $CRIU_DEBS (run deploy/install-deps)"
done

# --------------------------------------------------------------- meson install
t_log "meson install to /usr/local: the sshd drop-in goes to /etc/ssh/sshd_config.d"
(cd "$SRC" && meson setup "$T/build-local" --prefix=/usr/local -Dtests=false >"$T/meson-local.log" 2>&1) ||
	{ tail -n 20 "$T/meson-local.log" >&2; t_fail "meson setup --prefix=/usr/local failed"; }
installed=$(meson introspect "$T/build-local" --installed)
has_dest() { python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in json.load(sys.stdin).values() else 1)' "$1" <<<"$installed"; }
for f in /etc/ssh/sshd_config.d/nucleus-migrate.conf /usr/local/lib/systemd/system/nucleus-agent.service \
	/usr/local/lib/tmpfiles.d/nucleus-migrate.conf /usr/local/lib/sysctl.d/60-nucleus-migrate.conf \
	/usr/local/sbin/nucleus-agent /usr/local/sbin/nucleus-provision /usr/local/bin/nucleus-migrate \
	/usr/local/share/man/man8/nucleus-provision.8 /usr/local/share/doc/nucleus-migrate/examples/agent.conf.example; do
	has_dest "$f" || t_fail "meson install with prefix /usr/local does not install $f"
done
has_dest /usr/local/etc/ssh/sshd_config.d/nucleus-migrate.conf && t_fail "the drop-in still goes below /usr/local/etc"
grep -q '^SSHD_DROPIN_INSTALLED="/etc/ssh/sshd_config.d/nucleus-migrate.conf"$' "$T/build-local/deploy/nucleus-provision" ||
	t_fail "the installed nucleus-provision does not default to the installed drop-in"

# --------------------------------------------------------------- build
t_log "dpkg-buildpackage -b -uc -us on a copy of the tree"
version=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" "$SRC/meson.build" | head -n1)
[ -n "$version" ] || t_fail "no project version in meson.build"
tree=$T/nucleus-migrate-$version
mkdir "$tree"
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
	# what is committed or would be, never build directories
	(cd "$SRC" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
		[ -e "$f" ] && printf '%s\0' "$f"
	done | tar --null -T - -cf -) | tar -C "$tree" -xf -
else
	tar -C "$SRC" --exclude='./build*' --exclude-vcs -cf - . | tar -C "$tree" -xf -
fi
t_assert_eq "$(cd "$tree" && dpkg-parsechangelog -S Version)" "$version" "debian/changelog's version vs meson.build's"
# nocheck: the unit suite runs in its own builds; a clean environment, as a
# build machine has.
(cd "$tree" && env -i PATH="$CLEAN_PATH" HOME=/root LC_ALL=C.UTF-8 DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
	dpkg-buildpackage -b -uc -us >"$T/build.log" 2>&1) ||
	{ tail -n 40 "$T/build.log" >&2; t_fail "dpkg-buildpackage failed (log above)"; }
deb=$(ls "$T"/nucleus-migrate_"$version"_*.deb)
t_log "built $(basename "$deb")"

# What the package holds, before installing it anywhere.
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for f in /usr/sbin/nucleus-agent /usr/bin/nucleus-migrate /usr/sbin/nucleus-provision \
	/lib/systemd/system/nucleus-agent.service /etc/ssh/sshd_config.d/nucleus-migrate.conf \
	/usr/lib/sysctl.d/60-nucleus-migrate.conf /usr/lib/tmpfiles.d/nucleus-migrate.conf \
	/usr/share/man/man8/nucleus-agent.8.gz /usr/share/man/man8/nucleus-migrate.8.gz \
	/usr/share/man/man8/nucleus-provision.8.gz \
	/usr/share/doc/nucleus-migrate/examples/agent.conf.example /usr/share/doc/nucleus-migrate/copyright; do
	grep -qxF "$f" <<<"$contents" || t_fail "the package lacks $f"
done
grep -q '^/usr/local' <<<"$contents" && t_fail "the package installs below /usr/local: $(grep '^/usr/local' <<<"$contents" | head -n 3)"
t_assert_eq "$(dpkg-deb -f "$deb" Package)" nucleus-migrate "package name"
t_assert_eq "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles)" /etc/ssh/sshd_config.d/nucleus-migrate.conf "conffiles"
depends=$(dpkg-deb -f "$deb" Depends)
for want in 'criu (>= 4.2' 'libcriu2 (>= 4.2' openssh-server passwd libuv1 libssh2-1; do
	grep -qF "$want" <<<"$depends" || t_fail "Depends lacks $want: $depends"
done
cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./etc/ssh/sshd_config.d/nucleus-migrate.conf) \
	"$SRC/deploy/sshd/nucleus-migrate.conf" || t_fail "the packaged drop-in differs from deploy/sshd/nucleus-migrate.conf"

# --------------------------------------------------------------- throwaway root
# dep_names DEB...: the packages DEB... depend on (first alternatives), for
# the cached root to hold already.
dep_names() {
	local d
	for d in "$@"; do dpkg-deb -f "$d" Depends; done | tr ',' '\n' |
		sed 's/^ *//; s/ *|.*//; s/[ (].*//; s/:.*//' | grep -v '^$' | sort -u
}
mapfile -t criu_debs < <(ls "$CRIU_DEBS"/*.deb)
local_pkgs=$(for d in "${criu_debs[@]}" "$deb"; do dpkg-deb -f "$d" Package; done | sort -u)
want_pkgs=$( (dep_names "${criu_debs[@]}" "$deb"; echo systemd) | grep -vxF -f <(echo "$local_pkgs") | sort -u | tr '\n' ' ')
recipe="recipe $BASE_RECIPE mirror $MIRROR packages $want_pkgs"

# make_base: a minimal Debian 12 with the packages' dependencies, services
# never started (policy-rc.d), apt's downloads dropped.
make_base() {
	local new=$BASE.new
	rm -rf "$new"
	t_log "making the cached Debian 12 root $BASE (once; debootstrap from $MIRROR)"
	debootstrap --variant=minbase bookworm "$new" "$MIRROR" >"$T/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$T/debootstrap.log" >&2; rm -rf "$new"; t_fail "debootstrap failed"; }
	printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
	chmod 755 "$new/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$new/etc/resolv.conf"
	# shellcheck disable=SC2086
	chroot "$new" env -i PATH="$CLEAN_PATH" DEBIAN_FRONTEND=noninteractive sh -c \
		"apt-get update -qq && apt-get install -y -qq --no-install-recommends $want_pkgs && apt-get clean" \
		>>"$T/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$T/debootstrap.log" >&2; rm -rf "$new"; t_fail "installing the dependencies into the base root failed"; }
	echo "$recipe" >"$new/.nucleus-recipe"
	rm -rf "$BASE"
	mv "$new" "$BASE"
}

mkdir -p "$(dirname "$BASE")"
exec 8>"$BASE.lock"
if [ "$(cat "$BASE/.nucleus-recipe" 2>/dev/null)" != "$recipe" ]; then
	flock 8
	[ "$(cat "$BASE/.nucleus-recipe" 2>/dev/null)" = "$recipe" ] || make_base
	flock -u 8
fi
# Shared while this test's overlay stands on it: a rebuild waits.
flock -s 8
[ "$(cat "$BASE/.nucleus-recipe" 2>/dev/null)" = "$recipe" ] || t_fail "the cached root changed under this test"

mkdir "$ROOT" "$T/upper" "$T/work"
mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$T/upper,workdir=$T/work" "$ROOT"
# /proc for systemd-tmpfiles and ldd; its sys/ read-only, so that nothing
# run in the root changes this machine's kernel settings (the postinst's
# sysctl then warns and goes on).
mount -t proc proc "$ROOT/proc"
mount --bind "$ROOT/proc/sys" "$ROOT/proc/sys"
mount -o remount,bind,ro "$ROOT/proc/sys"
mkdir "$ROOT/tmp/debs"
cp "${criu_debs[@]}" "$deb" "$ROOT/tmp/debs/"
in_root apt-get install -y -qq --no-install-recommends \
	"/tmp/debs/$(basename "$CRIU_DEBS"/criu_*.deb)" "/tmp/debs/$(basename "$CRIU_DEBS"/libcriu2_*.deb)" >"$T/apt.log" 2>&1 ||
	{ tail -n 20 "$T/apt.log" >&2; t_fail "installing the CRIU packages into the throwaway root failed"; }

# listing: every path in the root (what dpkg and apt keep about themselves
# aside), to compare before installing and after purging.
listing() {
	(cd "$ROOT" && find . -xdev \( -path ./var/lib/dpkg -o -path ./var/lib/apt -o -path ./var/cache -o -path ./var/log \
		-o -path ./tmp -o -path ./proc -o -path ./.nucleus-recipe \) -prune -o -print) | sort
}
listing >"$T/before"

# --------------------------------------------------------------- install
t_log "install into the throwaway root"
in_root apt-get install -y --no-install-recommends "/tmp/debs/$(basename "$deb")" >"$T/install.log" 2>&1 ||
	{ tail -n 20 "$T/install.log" >&2; t_fail "apt-get install of the package failed"; }
grep -i 'error' "$T/install.log" && t_fail "installing printed errors (above)"
grep -q 'warning: could not apply /usr/lib/sysctl.d/60-nucleus-migrate.conf now' "$T/install.log" ||
	t_fail "the postinst did not try to apply the sysctl (read-only here): $(cat "$T/install.log")"

t_log "files in place, programs run"
for f in /usr/sbin/nucleus-agent /usr/bin/nucleus-migrate /usr/sbin/nucleus-provision \
	/lib/systemd/system/nucleus-agent.service /etc/ssh/sshd_config.d/nucleus-migrate.conf \
	/usr/lib/sysctl.d/60-nucleus-migrate.conf /usr/lib/tmpfiles.d/nucleus-migrate.conf \
	/usr/share/doc/nucleus-migrate/examples/agent.conf.example; do
	[ -f "$ROOT$f" ] || t_fail "$f is not installed"
done
t_assert_eq "$(in_root nucleus-migrate --version)" "nucleus-migrate $version" "nucleus-migrate --version"
t_assert_eq "$(in_root nucleus-agent --version)" "nucleus-agent $version" "nucleus-agent --version"
out=$(in_root nucleus-provision --help) || t_fail "nucleus-provision --help fails"
grep -q '^    nucleus-provision - set up nodes for nucleus-migrate' <<<"$out" ||
	t_fail "nucleus-provision --help does not print its manual"
for m in nucleus-agent nucleus-migrate nucleus-provision; do
	grep -q '^\.TH ' <<<"$(zcat "$ROOT/usr/share/man/man8/$m.8.gz")" || t_fail "man page $m.8 is not a man page"
done
grep -qiE 'rpath|runpath' <<<"$(readelf -d "$ROOT/usr/sbin/nucleus-agent")" && t_fail "nucleus-agent carries an RPATH/RUNPATH"
grep -q 'libcriu.so.2 => /lib/.*/libcriu.so.2\|libcriu.so.2 => /usr/lib/.*/libcriu.so.2' <<<"$(in_root ldd /usr/sbin/nucleus-agent)" ||
	t_fail "nucleus-agent does not find libcriu.so.2 in the root: $(in_root ldd /usr/sbin/nucleus-agent | grep criu)"

t_log "the migration user, the unit, the runtime directory"
IFS=: read -r _ _ uid gid _ home shell < <(in_root getent passwd nucleus) || t_fail "no user nucleus"
t_assert_eq "$home:$shell" "/run/nucleus-migrate:/bin/sh" "home and shell of nucleus"
[ "$uid" -lt 1000 ] || t_fail "nucleus is not a system user (uid $uid)"
t_assert_eq "$(in_root getent group nucleus | cut -d: -f3)" "$gid" "group nucleus is the user's group"
t_assert_eq "$(in_root getent shadow nucleus | cut -d: -f2,8)" "*:" "password field and expiry of nucleus"
wants=$ROOT/etc/systemd/system/multi-user.target.wants/nucleus-agent.service
t_assert_eq "$(readlink "$wants")" /lib/systemd/system/nucleus-agent.service "the unit is enabled"
# numeric: this machine's names for the root's ids may differ
t_assert_eq "$(stat -c '%a %u:%g' "$ROOT/run/nucleus-migrate")" "750 0:$gid" "/run/nucleus-migrate (tmpfiles.d, root:nucleus)"
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="$ROOT" /lib/systemd/system/nucleus-agent.service 2>&1) ||
	t_fail "systemd-analyze verify: $out"
[ -z "$out" ] || t_fail "systemd-analyze verify warns: $out"

t_log "sshd reads the drop-in; nucleus-provision accepts what the package made"
mkdir -p "$ROOT/run/sshd"
in_root sshd -t || t_fail "sshd -t fails with the drop-in"
grep -qx 'authorizedkeysfile /etc/nucleus/authorized_keys' <<<"$(in_root sshd -T -C user=nucleus,host=peer,addr=198.18.0.2)" ||
	t_fail "sshd does not apply the drop-in to user nucleus"
grep -qx 'authorizedkeysfile /etc/nucleus/authorized_keys' <<<"$(in_root sshd -T -C user=root,host=peer,addr=198.18.0.2)" &&
	t_fail "the drop-in applies to other users than nucleus"
in_root nucleus-provision init --node n1 --address 198.18.0.1 >"$T/provision.log" 2>&1 ||
	{ cat "$T/provision.log" >&2; t_fail "nucleus-provision init fails on the installed package"; }
grep -q 'created system user\|created group' "$T/provision.log" && t_fail "nucleus-provision made its own user: $(cat "$T/provision.log")"
grep -q obsolete <<<"$(in_root dpkg-query -W -f='${Conffiles}\n' nucleus-migrate)" && t_fail "a conffile became obsolete"
t_assert_eq "$(in_root md5sum /etc/ssh/sshd_config.d/nucleus-migrate.conf | cut -d' ' -f1)" \
	"$(in_root dpkg-query -W -f='${Conffiles}\n' nucleus-migrate | awk '$1 == "/etc/ssh/sshd_config.d/nucleus-migrate.conf" {print $2}')" \
	"the drop-in after nucleus-provision init (unchanged conffile)"
[ -f "$ROOT/etc/nucleus/agent.conf" ] || t_fail "nucleus-provision init wrote no /etc/nucleus/agent.conf"

t_log "reinstall (same version: prerm upgrade, postinst configure)"
in_root dpkg -i "/tmp/debs/$(basename "$deb")" >"$T/reinstall.log" 2>&1 ||
	{ tail -n 20 "$T/reinstall.log" >&2; t_fail "reinstalling the package failed"; }
t_assert_eq "$(in_root getent passwd nucleus | cut -d: -f3)" "$uid" "uid of nucleus after a reinstall"

# --------------------------------------------------------------- remove, purge
t_log "remove: programs go, the conffile and the operator's data stay"
in_root dpkg -r nucleus-migrate >"$T/remove.log" 2>&1 || { cat "$T/remove.log" >&2; t_fail "dpkg -r failed"; }
for f in /usr/sbin/nucleus-agent /usr/bin/nucleus-migrate /usr/sbin/nucleus-provision /lib/systemd/system/nucleus-agent.service; do
	[ ! -e "$ROOT$f" ] || t_fail "$f is left after removal"
done
[ -f "$ROOT/etc/ssh/sshd_config.d/nucleus-migrate.conf" ] || t_fail "dpkg -r removed the conffile"
[ -f "$ROOT/etc/nucleus/agent.conf" ] || t_fail "dpkg -r removed the operator's configuration"

t_log "purge: nothing left but the operator's data and the locked user"
in_root dpkg -P nucleus-migrate >"$T/purge.log" 2>&1 || { cat "$T/purge.log" >&2; t_fail "dpkg -P failed"; }
grep -q 'kept the operator.s data: /etc/nucleus /var/lib/nucleus' "$T/purge.log" ||
	t_fail "the purge does not say what it kept: $(cat "$T/purge.log")"
[ ! -e "$ROOT/etc/ssh/sshd_config.d/nucleus-migrate.conf" ] || t_fail "the drop-in is left after purge"
[ ! -e "$ROOT/run/nucleus-migrate" ] || t_fail "/run/nucleus-migrate is left after purge"
if [ -e "$wants" ] || [ -L "$wants" ]; then t_fail "the unit's enablement is left after purge"; fi
t_assert_eq "$(in_root getent shadow nucleus | cut -d: -f2,8)" "!*:1" "nucleus after purge (locked, expired)"
listing >"$T/after"
# What may differ: the operator's data nucleus-provision wrote (with the
# nucleus runtime's state directory), sshd's runtime directory, the account
# files' backups, and the now empty directories debhelper's systemd helper
# keeps its state in.
left=$(comm -13 "$T/before" "$T/after" | grep -vE '^\./(etc/nucleus|var/lib/nucleus|var/lib/nucleus-migrate|run/nucleus|run/sshd)(/|$)' |
	grep -vxE '\./etc/(passwd|group|shadow|gshadow)-|\./var/lib/systemd(/deb-systemd-helper-enabled.*|/deb-systemd-user-helper-enabled.*)?' || true)
[ -z "$left" ] || t_fail "left after purge: $(tr '\n' ' ' <<<"$left")"
gone=$(comm -23 "$T/before" "$T/after")
[ -z "$gone" ] || t_fail "removed by install and purge, though not the package's: $(tr '\n' ' ' <<<"$gone")"

t_log "install after a purge unlocks the user"
in_root apt-get install -y -qq --no-install-recommends "/tmp/debs/$(basename "$deb")" >"$T/install2.log" 2>&1 ||
	{ tail -n 20 "$T/install2.log" >&2; t_fail "installing after a purge failed"; }
t_assert_eq "$(in_root getent shadow nucleus | cut -d: -f2,8)" "*:" "nucleus after a new installation"
t_assert_eq "$(in_root getent passwd nucleus | cut -d: -f3)" "$uid" "uid of nucleus after a purge and a new installation"
in_root dpkg -P nucleus-migrate >"$T/purge2.log" 2>&1 || { cat "$T/purge2.log" >&2; t_fail "the second purge failed"; }

t_log "ok: $(basename "$deb") builds, installs, runs, reinstalls, removes and purges cleanly"
