package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// --- disk and swap encryption ---

// encryptingUUIDPrefixes are the dm/uuid prefixes cryptsetup gives to devices that encrypt.
// CRYPT-VERITY and CRYPT-INTEGRITY devices only authenticate, so they are looked through.
var encryptingUUIDPrefixes = []string{"CRYPT-LUKS1", "CRYPT-LUKS2", "CRYPT-PLAIN", "CRYPT-BITLK", "CRYPT-TCRYPT"}

// maxBlockDepth bounds the walk down the slaves/ tree (LVM on LUKS on RAID is depth 3).
const maxBlockDepth = 16

func collectLinuxDisk(_ context.Context, env *Env) (Partial, error) {
	var p Partial
	data, err := env.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return p, fmt.Errorf("root and swap encryption unknown: %w", err)
	}
	mounts, err := parseMountinfo(data)
	if err != nil {
		return p, fmt.Errorf("root and swap encryption unknown: %w", err)
	}
	var errs []error
	if m, ok := mountOf(mounts, "/"); !ok {
		errs = append(errs, errors.New("root encryption unknown: no mount for / in mountinfo"))
	} else if enc, err := mountEncrypted(env, m); err != nil {
		errs = append(errs, fmt.Errorf("root encryption unknown: %w", err))
	} else {
		p.DiskEncrypted = observe(env, enc)
	}
	if enc, err := swapEncrypted(env, mounts); err != nil {
		errs = append(errs, fmt.Errorf("swap encryption unknown: %w", err))
	} else {
		p.SwapEncrypted = observe(env, enc)
	}
	return p, errors.Join(errs...)
}

// mountOf returns the mount that holds file: the longest mount point that is a prefix of it,
// the last one listed when a mount point is mounted over.
func mountOf(mounts []mountEntry, file string) (mountEntry, bool) {
	best, found := mountEntry{}, false
	for _, m := range mounts {
		mp := m.MountPoint
		if file == mp || mp == "/" || strings.HasPrefix(file, mp+"/") {
			if !found || len(mp) >= len(best.MountPoint) {
				best, found = m, true
			}
		}
	}
	return best, found
}

// mountDevice returns the sysfs directory (as seen from the root) of the block device
// behind a mount. Filesystems with anonymous device numbers (btrfs, major 0) are found by their
// source device instead.
func mountDevice(env *Env, m mountEntry) (string, error) {
	if m.Major != 0 {
		return env.Realpath(fmt.Sprintf("/sys/dev/block/%d:%d", m.Major, m.Minor))
	}
	if !strings.HasPrefix(m.Source, "/dev/") {
		return "", fmt.Errorf("%s is on %s %q, which is not a block device (container or network root?)", m.MountPoint, m.FSType, truncate(m.Source))
	}
	return deviceDir(env, m.Source)
}

// deviceDir returns the sysfs directory of a /dev path: /dev/NAME is /sys/class/block/NAME;
// /dev/mapper/NAME is the dm device whose dm/name is NAME (udev's symlinks are followed first
// when they exist).
func deviceDir(env *Env, dev string) (string, error) {
	if real, err := env.Realpath(dev); err == nil {
		dev = real
	}
	if name, ok := strings.CutPrefix(dev, "/dev/mapper/"); ok {
		ents, err := env.ReadDir("/sys/block")
		if err != nil {
			return "", fmt.Errorf("find %s: %w", dev, err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "dm-") {
				continue
			}
			b, err := env.ReadFile("/sys/block/" + e.Name() + "/dm/name")
			if err == nil && strings.TrimSpace(string(b)) == name {
				return env.Realpath("/sys/block/" + e.Name())
			}
		}
		return "", fmt.Errorf("no device-mapper device named %q in /sys/block", name)
	}
	name, ok := strings.CutPrefix(dev, "/dev/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("cannot map %q to a block device", truncate(dev))
	}
	dir, err := env.Realpath("/sys/class/block/" + name)
	if err != nil {
		return "", err
	}
	if ok, err := env.Exists(dir + "/dev"); err != nil || !ok {
		return "", fmt.Errorf("%s: no block device %s in /sys/class/block", dev, name)
	}
	return dir, nil
}

func mountEncrypted(env *Env, m mountEntry) (bool, error) {
	dir, err := mountDevice(env, m)
	if err != nil {
		return false, err
	}
	return blockEncrypted(env, dir, 0)
}

// blockEncrypted reports whether the block device at sysfs dir is, or sits entirely on, a
// dm-crypt device. A device with several slaves (LVM across PVs, RAID) is encrypted only if all
// of them are, because its data may live on any of them.
func blockEncrypted(env *Env, dir string, depth int) (bool, error) {
	if depth > maxBlockDepth {
		return false, fmt.Errorf("%s: block device stack deeper than %d", dir, maxBlockDepth)
	}
	uuid, err := env.ReadFile(dir + "/dm/uuid")
	switch {
	case err == nil:
		u := strings.TrimSpace(string(uuid))
		for _, pre := range encryptingUUIDPrefixes {
			if strings.HasPrefix(u, pre+"-") || u == pre {
				return true, nil
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	slaves, err := env.ReadDir(dir + "/slaves")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if len(slaves) == 0 {
		// A partition's stack is its disk's: md0p1 of an md0 built on LUKS members.
		part, err := env.Exists(dir + "/partition")
		if err != nil || !part {
			return false, err
		}
		return blockEncrypted(env, path.Dir(dir), depth+1)
	}
	for _, s := range slaves {
		sub, err := env.Realpath(dir + "/slaves/" + s.Name())
		if err != nil {
			return false, err
		}
		enc, err := blockEncrypted(env, sub, depth+1)
		if err != nil || !enc {
			return false, err
		}
	}
	return true, nil
}

// swapEncrypted reports whether every active swap area is encrypted: partitions by their block
// stack, swap files by the filesystem that holds them. No swap, and zram (memory), leave nothing
// on disk and count as encrypted.
func swapEncrypted(env *Env, mounts []mountEntry) (bool, error) {
	data, err := env.ReadFile("/proc/swaps")
	if err != nil {
		return false, err
	}
	swaps, err := parseSwaps(data)
	if err != nil {
		return false, err
	}
	for _, s := range swaps {
		var enc bool
		switch {
		case strings.HasPrefix(s.Filename, "/dev/zram"):
			enc = true
		case s.Type == "partition":
			dir, err := deviceDir(env, s.Filename)
			if err != nil {
				return false, err
			}
			if enc, err = blockEncrypted(env, dir, 0); err != nil {
				return false, err
			}
		case s.Type == "file":
			m, ok := mountOf(mounts, s.Filename)
			if !ok {
				return false, fmt.Errorf("no mount holds swap file %s", s.Filename)
			}
			if enc, err = mountEncrypted(env, m); err != nil {
				return false, fmt.Errorf("swap file %s: %w", s.Filename, err)
			}
		default:
			return false, fmt.Errorf("swap %s has unknown type %q", s.Filename, truncate(s.Type))
		}
		if !enc {
			return false, nil
		}
	}
	return true, nil
}
