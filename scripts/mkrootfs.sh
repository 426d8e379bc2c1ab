#!/usr/bin/env bash
# mkrootfs.sh builds the Confidant demo OS root filesystem: a raw ext4 image
# (4096-byte blocks, label confidant-root) holding busybox, an /sbin/init
# script and /usr/bin/confidant-guestcheck. It needs no root privileges, no
# loop device and no device-mapper: mke2fs -d copies a staging directory.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: scripts/mkrootfs.sh OUT.img [SIZE_MIB]

Builds the Confidant demo OS root filesystem as a raw ext4 image at OUT.img
(default size 64 MiB, at least 16). The image holds:
  /bin/busybox (static) and a link for each applet (sh, mount, cat, ls, ...)
  /sbin/init                       mounts /proc /sys /dev unless already
                                   mounted, runs confidant-guestcheck, prints
                                   "confidant-demo: OS init reached, powering off"
                                   and powers off
  /usr/bin/confidant-guestcheck    built from integration/guestcheck
                                   (CGO_ENABLED=0, -trimpath)
  /etc/hostname, /etc/os-release, /etc/passwd, /etc/group
  empty /mnt/resource /tmp /proc /sys /dev /run /root

The filesystem is ext4 with 4096-byte blocks (the agent mounts it from a
dm-crypt mapping), every file owned by root, fixed UUID, hash seed and
timestamps, so two builds from the same inputs give the same bytes.
OUT.img is written to a temporary file first and renamed on success;
running the script again replaces it.

Environment:
  BUSYBOX            static busybox to install (default: /bin/busybox)
  GO                 go command (default: go)
  SOURCE_DATE_EPOCH  timestamp of every file and of the filesystem
                     (default: 1735689600, 2025-01-01T00:00:00Z)
  ROOTFS_UUID        filesystem UUID (default: 6c0f1da4-7e00-4d00-8000-000000000001)
EOF
}

die() {
	echo "mkrootfs: $*" >&2
	exit 1
}

case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
"" | -*)
	usage >&2
	exit 2
	;;
esac
[ $# -le 2 ] || {
	usage >&2
	exit 2
}

out=$1
size_mib=${2:-64}
[[ $size_mib =~ ^[0-9]+$ ]] && [ "$size_mib" -ge 16 ] && [ "$size_mib" -le 65536 ] ||
	die "SIZE_MIB must be a whole number of MiB between 16 and 65536, got '$size_mib'"

busybox=${BUSYBOX:-/bin/busybox}
gocmd=${GO:-go}
epoch=${SOURCE_DATE_EPOCH:-1735689600}
fs_uuid=${ROOTFS_UUID:-6c0f1da4-7e00-4d00-8000-000000000001}
[[ $fs_uuid =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
	die "ROOTFS_UUID must be a lower-case UUID, got '$fs_uuid'"
# The directory-hash seed only has to be fixed; derive it from the UUID.
hash_seed=${fs_uuid%-*}-$(printf '%012x' $((0x${fs_uuid##*-} ^ 0xffff)))
[[ $epoch =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number, got '$epoch'"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for tool in mke2fs e2fsck debugfs "$gocmd"; do
	command -v "$tool" >/dev/null || die "$tool not found (e2fsprogs and Go are needed)"
done
[ -x "$busybox" ] || die "busybox not found at $busybox (install busybox-static or set BUSYBOX)"

# is_static FILE: true when FILE has no ELF interpreter, i.e. runs without
# any library. Without readelf the check is skipped.
is_static() {
	if command -v readelf >/dev/null; then
		! readelf -lW "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
	else
		true
	fi
}
is_static "$busybox" || die "$busybox is dynamically linked; the demo OS has no libraries (install busybox-static)"

out_dir=$(cd "$(dirname "$out")" && pwd) || die "directory of $out does not exist"
out=$out_dir/$(basename "$out")
stage=$(mktemp -d "${TMPDIR:-/tmp}/confidant-rootfs.XXXXXX")
tmp_img=$out.tmp.$$
cleanup() {
	rm -rf "$stage"
	rm -f "$tmp_img"
}
trap cleanup EXIT

umask 022
root=$stage/root
mkdir -p "$root"/{bin,sbin,etc,usr/bin,usr/sbin,mnt/resource,proc,sys,dev,run,tmp,root,var}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

# busybox and its applets, each a link at the path busybox itself names.
# /sbin/init is ours and linuxrc is not wanted. The links are made in the
# image by debugfs below (one process, where ln would fork once per applet).
install -m 0755 "$busybox" "$root/bin/busybox"
links=$stage/links.cmds
applets=0
while IFS= read -r path; do
	case "$path" in
	sbin/init | linuxrc | bin/busybox | "") continue ;;
	esac
	case "${path%/*}" in
	bin) target=busybox ;;
	sbin) target=../bin/busybox ;;
	usr/bin | usr/sbin) target=../../bin/busybox ;;
	*) die "busybox applet in unexpected directory: $path" ;;
	esac
	case "$path" in *[!A-Za-z0-9_./[-]*) die "unexpected busybox applet name: $path" ;; esac
	printf 'symlink "/%s" %s\n' "$path" "$target"
	applets=$((applets + 1))
done < <("$busybox" --list-full | sort -u) >"$links"
grep -q '^symlink "/bin/sh" ' "$links" || die "busybox has no sh applet"

# /usr/bin/confidant-guestcheck, static and without build paths or VCS stamps.
(cd "$repo" && CGO_ENABLED=0 "$gocmd" build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
	-o "$root/usr/bin/confidant-guestcheck" ./integration/guestcheck) ||
	die "building integration/guestcheck"
is_static "$root/usr/bin/confidant-guestcheck" || die "confidant-guestcheck is not static"

cat >"$root/sbin/init" <<'EOF'
#!/bin/sh
# /sbin/init of the Confidant demo OS. The agent (PID 1 of the initramfs)
# opened the LUKS2 OS and temp disks, mounted them, moved /proc /sys /dev
# into this root and switched to it. This checks what it finds, then powers
# the guest off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

# mounted DIR: is DIR a mount point? (busybox has no mountpoint applet.)
mounted() {
	[ -r /proc/self/mountinfo ] &&
		awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

mounted /proc || mount -t proc -o nosuid,nodev,noexec proc /proc
mounted /sys || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mounted /dev || mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
# securityfs: the firmware's TCG event log, which guestcheck reports.
mounted /sys/kernel/security || mount -t securityfs -o nosuid,nodev,noexec securityfs /sys/kernel/security
# /run is left as the agent handed it over: it may hold /run/confidant/token.jwt.

echo "confidant-demo: $(cat /etc/hostname) up, kernel $(uname -r)"
/usr/bin/confidant-guestcheck
echo "confidant-demo: guestcheck exit status $?"
echo "confidant-demo: OS init reached, powering off"
sync
poweroff -f
# poweroff -f does not return; if it does, try sysrq, and never let PID 1 exit.
echo o >/proc/sysrq-trigger
while :; do sleep 3600; done
EOF
chmod 0755 "$root/sbin/init"

echo confidant-demo >"$root/etc/hostname"
cat >"$root/etc/os-release" <<'EOF'
NAME="Confidant demo OS"
ID=confidant-demo
PRETTY_NAME="Confidant demo OS"
VERSION_ID=1
HOME_URL="https://github.com/confidant-cvm/confidant"
EOF
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

# Fixed timestamps on every staged file and directory.
find "$root" -exec touch -h -d "@$epoch" {} +

rm -f "$tmp_img"
truncate -s "${size_mib}M" "$tmp_img"
E2FSPROGS_FAKE_TIME=$epoch SOURCE_DATE_EPOCH=$epoch \
	mke2fs -q -F -t ext4 -b 4096 -m 0 -d "$root" -L confidant-root -U "$fs_uuid" \
	-E "root_owner=0:0,hash_seed=$hash_seed" "$tmp_img" "${size_mib}M" ||
	die "mke2fs failed"

# mke2fs -d copies the builder's uid, gid and inode change times (which touch
# cannot set); make every inode root's and dated @epoch, so the image is the
# same whoever builds it and whenever. Then add the applet links (debugfs
# makes them root's, dated by E2FSPROGS_FAKE_TIME).
cmds=$stage/debugfs.cmds
(cd "$root" && find . -mindepth 1) | sed 's|^\.||' | while IFS= read -r p; do
	printf 'sif "%s" uid 0\nsif "%s" gid 0\nsif "%s" ctime @%s\n' "$p" "$p" "$p" "$epoch"
done >"$cmds"
cat "$links" >>"$cmds"
E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$cmds" "$tmp_img" >/dev/null 2>"$stage/debugfs.err" ||
	die "setting owners, times and applet links with debugfs: $(cat "$stage/debugfs.err")"
if grep -v '^debugfs [0-9]' "$stage/debugfs.err" | grep -q .; then
	die "setting owners, times and applet links with debugfs: $(cat "$stage/debugfs.err")"
fi

e2fsck -fn "$tmp_img" >"$stage/fsck.out" 2>&1 || die "e2fsck found problems: $(cat "$stage/fsck.out")"

mv -f "$tmp_img" "$out"
trap 'rm -rf "$stage"' EXIT

guest_bytes=$(stat -c %s "$root/usr/bin/confidant-guestcheck")
echo "mkrootfs: staged busybox ($applets applets), /sbin/init, /usr/bin/confidant-guestcheck ($guest_bytes bytes, static)"
echo "mkrootfs: wrote $out: ext4, ${size_mib} MiB, 4096-byte blocks, label confidant-root, UUID $fs_uuid, files dated @$epoch, owned by root"
echo "mkrootfs: sha256 $(sha256sum "$out" | cut -d' ' -f1)"
