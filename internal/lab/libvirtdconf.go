package lab

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// portSlot spreads the migration port ranges of the daemons of one test
// binary, and (by the pid) of test binaries running at once.
var portSlot atomic.Int32

const (
	migrationPortBase  = 49152
	migrationPortCount = 16
	migrationPortSlots = 800 // 49152 + 800*16 stays below 62000
)

// prepare writes the daemon's configuration: a copy of the stock *.conf
// files (no domains, networks, pools or filters of the host's), with the
// lab's settings above each copy, since libvirt's parser takes the first
// occurrence of a key.
func (d *Libvirtd) prepare() error {
	for _, m := range libvirtdDirs {
		if err := os.MkdirAll(filepath.Join(d.Dir, m.sub), 0o755); err != nil {
			return err
		}
	}
	uuid, err := randomUUID()
	if err != nil {
		return err
	}
	d.HostUUID = uuid
	slot := (os.Getpid()*7 + int(portSlot.Add(1))) % migrationPortSlots
	d.MigrationPorts = [2]int{migrationPortBase + slot*migrationPortCount, migrationPortBase + slot*migrationPortCount + migrationPortCount - 1}
	root, err := FlavourRoot()
	if err != nil {
		return err
	}
	confs, err := filepath.Glob(filepath.Join(root, "/etc/libvirt/*.conf"))
	if err != nil {
		return err
	}
	overrides := map[string]string{
		// A host UUID of its own (libvirt refuses a migration to the
		// same one; the hostname is not compared) and the socket at a
		// path that is the same inside the namespace and out, so
		// clients and the other daemons reach it as DIR/run/libvirt.
		"libvirtd.conf": fmt.Sprintf("host_uuid = %q\nunix_sock_dir = %q\n", d.HostUUID, filepath.Join(d.Dir, "run", "libvirt")),
		// Run QEMU as root (libvirt-qemu cannot use /dev/kvm here and
		// libvirt then re-probes QEMU on every call), log QEMU's output
		// to files without virtlogd, no security driver to configure, no
		// cgroups (two daemons would both name a domain's cgroup
		// qemu-<id>-<name>), and migration ports of its own.
		"qemu.conf": fmt.Sprintf("user = \"root\"\ngroup = \"root\"\nstdio_handler = \"file\"\nsecurity_driver = \"none\"\ncgroup_controllers = [ ]\nmigration_port_min = %d\nmigration_port_max = %d\n",
			d.MigrationPorts[0], d.MigrationPorts[1]),
	}
	for _, src := range confs {
		stock, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		conf := overrides[filepath.Base(src)] + "\n" + string(stock)
		if err := os.WriteFile(filepath.Join(d.Dir, "etc", filepath.Base(src)), []byte(conf), 0o644); err != nil {
			return err
		}
	}
	return d.writeHook()
}

// writeHook installs a qemu hook that refuses incoming migrations while
// the file refuseFile exists: a destination that says no, for tests of a
// migration that fails. libvirt looks for hooks only at its start. The
// hook reads its input (the domain XML) and prints nothing, which libvirt
// takes as "no change to the XML".
func (d *Libvirtd) writeHook() error {
	dir := filepath.Join(d.Dir, "etc", "hooks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	script := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\nif [ \"$2\" = migrate ] && [ -e %q ]; then\n  echo \"the lab's destination refuses incoming migrations\" >&2\n  exit 1\nfi\nexit 0\n", d.refuseFile())
	return os.WriteFile(filepath.Join(dir, "qemu"), []byte(script), 0o755)
}

func (d *Libvirtd) refuseFile() string { return filepath.Join(d.Dir, "refuse-migrations") }

// RefuseMigrations makes the daemon refuse (or, with false, accept again)
// incoming migrations: its migrate hook fails the preparation.
func (d *Libvirtd) RefuseMigrations(refuse bool) error {
	if !refuse {
		if err := os.Remove(d.refuseFile()); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return os.WriteFile(d.refuseFile(), nil, 0o644)
}

func randomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// copyCapsCache copies libvirt's QEMU capabilities cache from one cache
// directory to another; it reports false when from holds none yet.
func copyCapsCache(from, to string) (bool, error) {
	caps, _ := filepath.Glob(filepath.Join(from, "qemu", "capabilities", "*.xml"))
	if len(caps) == 0 {
		return false, nil
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return false, err
	}
	if out, err := exec.Command("cp", "-a", from+"/.", to).CombinedOutput(); err != nil {
		return false, fmt.Errorf("copy libvirt cache %s: %w: %s", from, err, out)
	}
	return true, nil
}

// namespaceGone checks that no process is left in the daemon's mount
// namespace: with its last process the bind mounts go too.
func (d *Libvirtd) namespaceGone() error {
	if d.mntNS == "" {
		return nil
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
	var left []string
	for _, p := range procs {
		ns, err := os.Readlink(p)
		if err != nil || ns != d.mntNS {
			continue
		}
		pid := strings.Split(p, "/")[2]
		var n int
		fmt.Sscan(pid, &n)
		if alive(n) {
			left = append(left, pid)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("libvirtd namespace %s still has processes %s", d.mntNS, strings.Join(left, " "))
	}
	return nil
}
