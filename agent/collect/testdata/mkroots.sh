#!/bin/sh
# Regenerates the fixture trees under roots/.
#
# The trees hold only regular files: Go module zips drop symbolic links and refuse file names
# with a colon (sysfs's /sys/dev/block/MAJ:MIN), so both are listed instead in roots/NAME.symlinks
# ("path -> target", relative targets, or absolute ones that Env resolves inside the root) and
# the tests recreate them in a copy of the tree (see fixtureRoot in helpers_test.go).
set -eu
cd "$(dirname "$0")"
rm -rf roots
mkdir -p roots

w() { # w ROOT PATH CONTENT
	mkdir -p "roots/$1$(dirname "$2")"
	printf '%b' "$3" >"roots/$1$2"
}
ln_() { # ln_ ROOT LINKPATH TARGET
	mkdir -p "roots/$1$(dirname "$2")"
	ln -s "$3" "roots/$1$2"
}
# blockdev ROOT SYSPATH(under /sys/devices) NAME MAJ:MIN
blockdev() {
	w "$1" "/sys/devices/$2/dev" "$4\n"
	case "$3" in sd[a-z][0-9]*|nvme*p[0-9]*) w "$1" "/sys/devices/$2/partition" "${3##*[a-z]}\n";; esac
	ln_ "$1" "/sys/dev/block/$4" "../../devices/$2"
	ln_ "$1" "/sys/class/block/$3" "../../devices/$2"
	case "$2" in virtual/block/dm-*|pci0/block/sda|pci0/block/nvme0n1|virtual/block/zram0)
		ln_ "$1" "/sys/block/$3" "../devices/$2";; esac
}
# dm ROOT N NAME UUID SLAVE-SYSPATH...
dm() {
	r=$1 n=$2 name=$3 uuid=$4; shift 4
	blockdev "$r" "virtual/block/dm-$n" "dm-$n" "253:$n"
	w "$r" "/sys/devices/virtual/block/dm-$n/dm/name" "$name\n"
	w "$r" "/sys/devices/virtual/block/dm-$n/dm/uuid" "$uuid\n"
	mkdir -p "roots/$r/sys/devices/virtual/block/dm-$n/slaves"
	for s in "$@"; do
		ln -s "../../../../$s" "roots/$r/sys/devices/virtual/block/dm-$n/slaves/$(basename "$s")"
	done
}
common() { # common ROOT
	w "$1" /proc/sys/kernel/osrelease "6.8.0-45-generic\n"
	w "$1" /proc/sys/kernel/tainted "0\n"
	ln_ "$1" /var/run /run
}
mountinfo() { # mountinfo ROOT MAJ:MIN FSTYPE SOURCE
	w "$1" /proc/self/mountinfo "22 1 $2 / / rw,relatime shared:1 - $3 $4 rw\n23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n30 22 8:1 / /boot/efi rw,relatime shared:30 - vfat /dev/sda1 rw,fmask=0077\n31 22 0:40 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=1620212k,mode=755\n"
}
SWAPHDR='Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'
GNOMESESSION='# This is private data. Do not parse.\nUID=1000\nUSER=alice\nACTIVE=1\nIS_DISPLAY=1\nSTATE=active\nREMOTE=0\nTYPE=wayland\nORIGINAL_TYPE=wayland\nCLASS=user\nSCOPE=session-2.scope\nSEAT=seat0\nTTY=tty2\nSERVICE=gdm-password\nDESKTOP=ubuntu\nVTNR=2\nLEADER=1893\n'
PASSWD_ALICE='root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsyslog:x:104:111::/home/syslog:/usr/sbin/nologin\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nbackup-svc:x:1002:1002::/srv/backup:/usr/sbin/nologin\n'

# luks: Ubuntu 24.04, root on LUKS2 (sda3), swap file on root, GNOME session, ufw on, UEFI
# Secure Boot on, reboot pending (flag file reached through the /var/run -> /run link).
R=luks
common $R
mountinfo $R 253:0 ext4 /dev/mapper/dm_crypt-0
w $R /proc/swaps "$SWAPHDR/swap.img                               \tfile\t\t4194300\t\t0\t\t-2\n"
blockdev $R pci0/block/sda sda 8:0
blockdev $R pci0/block/sda/sda1 sda1 8:1
blockdev $R pci0/block/sda/sda3 sda3 8:3
dm $R 0 dm_crypt-0 CRYPT-LUKS2-5b1c0e8e4a2f4d0f9a3c6d7e8f901234-dm_crypt-0 pci0/block/sda/sda3
w $R /etc/os-release 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION="24.04.1 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n'
w $R /etc/passwd "$PASSWD_ALICE"
w $R /etc/shadow 'root:*:19900:0:99999:7:::\ndaemon:*:19900:0:99999:7:::\nsyslog:!:19900::::::\nalice:$y$j9T$S0m3Salt$Hh1xQ2VbQk4yq2nqgYQd7vJ0dF6oM5tq3h0m7rQw3w8:19901:0:99999:7:::\nnobody:*:19900:0:99999:7:::\nbackup-svc:!:19902::::::\n'
w $R /run/systemd/sessions/2 "$GNOMESESSION"
w $R /run/systemd/sessions/2.ref ''
w $R /run/reboot-required '*** System restart required ***\n'
w $R /var/lib/dpkg/status 'Package: base-files\nStatus: install ok installed\n'
w $R /etc/ufw/ufw.conf '# /etc/ufw/ufw.conf\n#\n\n# Set to yes to start on boot.\nENABLED=yes\n\n# Please use the ufw command to set the loglevel.\nLOGLEVEL=low\n'
printf '\006\000\000\000\001' > /dev/null
mkdir -p roots/$R/sys/firmware/efi/efivars
printf '\006\000\000\000\001' >roots/$R/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
w $R /sys/kernel/security/lockdown '[none] integrity confidentiality\n'

# lvm-on-luks: Fedora 40, root LV (dm-1) and swap LV (dm-2) on a LUKS1 PV (dm-0) on nvme,
# KDE session, firewalld, Secure Boot off, lockdown integrity, tainted kernel.
R=lvm-on-luks
common $R
w $R /proc/sys/kernel/osrelease "6.10.6-200.fc40.x86_64\n"
w $R /proc/sys/kernel/tainted "4096\n"
mountinfo $R 253:1 xfs /dev/mapper/fedora-root
w $R /proc/swaps "$SWAPHDR/dev/dm-2                               \tpartition\t8388604\t\t0\t\t-2\n"
blockdev $R pci0/block/nvme0n1 nvme0n1 259:0
blockdev $R pci0/block/nvme0n1/nvme0n1p3 nvme0n1p3 259:3
dm $R 0 luks-0c4e7d6a-1b2c-4d5e-8f90-a1b2c3d4e5f6 CRYPT-LUKS1-0c4e7d6a1b2c4d5e8f90a1b2c3d4e5f6-luks-0c4e7d6a-1b2c-4d5e-8f90-a1b2c3d4e5f6 pci0/block/nvme0n1/nvme0n1p3
dm $R 1 fedora-root LVM-Xk2mL0ZyQ1eY3h5oPq9sR7tU2vW4xY6zA8bC0dE2fG4hI6jK8lM0nO2pQ4rS6tU8 virtual/block/dm-0
dm $R 2 fedora-swap LVM-Xk2mL0ZyQ1eY3h5oPq9sR7tU2vW4xY6zB8bC0dE2fG4hI6jK8lM0nO2pQ4rS6tU8 virtual/block/dm-0
w $R /etc/os-release 'NAME="Fedora Linux"\nVERSION="40 (KDE Plasma)"\nID=fedora\nVERSION_ID=40\nPLATFORM_ID="platform:f40"\nVARIANT_ID=kde\n'
w $R /etc/passwd 'root:x:0:0:Super User:/root:/bin/bash\nbob:x:1000:1000:Bob:/home/bob:/bin/zsh\ncarol:x:1001:1001:Carol:/home/carol:/bin/bash\n'
w $R /etc/shadow 'root:!:19900:0:99999:7:::\nbob:$6$rounds=5000$abc$Q1sD8x9v0y1z2A3B4C5D6E7F8G9H0I1J2K3L4M5N6O7P8Q9R0S1T2U3V4W5X6Y7Z8a9b0c1d2e3f4g5h6i7j8:19901:0:99999:7:::\ncarol:!:19905:0:99999:7:::\n'
w $R /run/systemd/sessions/3 'UID=1000\nUSER=bob\nACTIVE=1\nIS_DISPLAY=1\nSTATE=active\nREMOTE=0\nTYPE=wayland\nCLASS=user\nSEAT=seat0\nDESKTOP=KDE\n'
w $R /run/systemd/sessions/c1 'UID=42\nUSER=sddm\nACTIVE=0\nSTATE=closing\nTYPE=x11\nCLASS=greeter\n'
w $R /etc/xdg/kscreenlockerrc '[Daemon]\nLockGrace=0\n'
w $R /home/bob/.config/kscreenlockerrc '[$Version]\nupdate_info=kscreenlocker.upd:0.1-autolock\n\n[Daemon]\nLockOnResume=true\nTimeout=10\n\n[Greeter][Wallpaper][org.kde.image][General]\nImage=/usr/share/wallpapers/Next/\n'
mkdir -p roots/$R/sys/firmware/efi/efivars
printf '\026\000\000\000\000' >roots/$R/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
printf '\006\000\000\000\000' >roots/$R/sys/firmware/efi/efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c
w $R /sys/kernel/security/lockdown 'none [integrity] confidentiality\n'

# verity-only: an immutable image with root on dm-verity (data sda2, hash sda3): not encrypted.
# Swap on zram; headless (only a tty session); BIOS boot; no lockdown LSM; no human users.
R=verity-only
common $R
mountinfo $R 253:0 ext4 /dev/mapper/usr
w $R /proc/swaps "$SWAPHDR/dev/zram0                              \tpartition\t1945596\t\t1024\t\t100\n"
blockdev $R pci0/block/sda sda 8:0
blockdev $R pci0/block/sda/sda2 sda2 8:2
blockdev $R pci0/block/sda/sda3 sda3 8:3
blockdev $R virtual/block/zram0 zram0 252:0
dm $R 0 usr CRYPT-VERITY-9e2c3a4b5d6e7f8091a2b3c4d5e6f708-usr pci0/block/sda/sda2 pci0/block/sda/sda3
w $R /etc/os-release 'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nID_LIKE=coreos\nVERSION=3815.2.0\nVERSION_ID=3815.2.0\nBUILD_ID=2024-03-01-1234\n'
w $R /etc/passwd 'root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:Flatcar Admin:/home/core:/bin/bash\n'
w $R /etc/shadow 'root:*:19900::::::\ncore:*:19900::::::\n'
w $R /run/systemd/sessions/1 'UID=500\nUSER=core\nACTIVE=1\nSTATE=active\nTYPE=tty\nCLASS=user\nTTY=tty1\n'

# plain: Debian 12 on /dev/sda2, swap on /dev/sda3 (both unencrypted), GNOME session whose
# screen lock is enforced through dconf locks, a user without a password, ufw off.
R=plain
common $R
mountinfo $R 8:2 ext4 /dev/sda2
w $R /proc/swaps "$SWAPHDR/dev/sda3                               \tpartition\t2097148\t\t0\t\t-2\n"
blockdev $R pci0/block/sda sda 8:0
blockdev $R pci0/block/sda/sda2 sda2 8:2
blockdev $R pci0/block/sda/sda3 sda3 8:3
w $R /etc/os-release 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n'
w $R /etc/passwd "$PASSWD_ALICE"
w $R /etc/shadow 'root:$y$j9T$abc$def:19900:0:99999:7:::\nalice::19901:0:99999:7:::\n'
w $R /run/systemd/sessions/4 "$GNOMESESSION"
w $R /var/lib/dpkg/status 'Package: base-files\n'
w $R /etc/ufw/ufw.conf 'ENABLED=no\nLOGLEVEL=low\n'
w $R /etc/dconf/profile/user 'user-db:user\nsystem-db:local\n'
w $R /etc/dconf/db/local.d/00-screensaver "# Managed by IT\n[org/gnome/desktop/session]\nidle-delay=uint32 600\n\n[org/gnome/desktop/screensaver]\nlock-enabled=true\nlock-delay=uint32 30\n"
w $R /etc/dconf/db/local.d/locks/screensaver '/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n/org/gnome/desktop/screensaver/lock-delay\n'

# btrfs-luks-plainswap: Fedora-style btrfs root (anonymous 0:NN device, found through its
# source /dev/mapper name) on LUKS2, but swap on a plain partition.
R=btrfs-luks-plainswap
common $R
mountinfo $R 0:33 btrfs /dev/mapper/luks-root
w $R /proc/swaps "$SWAPHDR/dev/sda3                               \tpartition\t2097148\t\t0\t\t-2\n"
blockdev $R pci0/block/sda sda 8:0
blockdev $R pci0/block/sda/sda2 sda2 8:2
blockdev $R pci0/block/sda/sda3 sda3 8:3
dm $R 0 luks-root CRYPT-LUKS2-aa11bb22cc33dd44ee55ff6677889900-luks-root pci0/block/sda/sda2
w $R /etc/os-release 'ID=fedora\nVERSION_ID=41\n'

# overlay: a container whose root is an overlay filesystem: encryption is unknown.
R=overlay
common $R
mountinfo $R 0:52 overlay overlay
w $R /proc/swaps "$SWAPHDR"
w $R /etc/os-release 'ID=alpine\nVERSION_ID=3.20.3\n'

# Move every symlink into the manifest.
for dir in roots/*/; do
	name=$(basename "$dir")
	(cd "$dir" && find . -type l | sort | while read -r l; do
		printf '%s -> %s\n' "${l#.}" "$(readlink "$l")"
		rm "$l"
	done) >"roots/$name.symlinks"
	find "$dir" -type d -empty -delete
done
