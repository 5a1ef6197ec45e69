// Package lab runs real QEMU VMs, guests that do real disk I/O, and an
// isolated libvirtd (or several, with live migration between them; see
// docs/lab.md), for qtune's integration tests, demo and benchmarks.
// Everything it starts lives in its own temporary directory and is stopped
// by PID.
package lab

import (
	"os"
	"os/exec"
	"testing"
)

// Required reports whether integration tests must run: QTUNE_LAB=require
// (set by "make test" and so by CI) turns a missing tool into a failure
// instead of a skip.
func Required() bool { return os.Getenv("QTUNE_LAB") == "require" }

// NeedQEMU skips the test when qemu-system-x86_64 or qemu-img is missing,
// or fails it when the lab is required.
func NeedQEMU(t testing.TB) {
	t.Helper()
	need(t, "qemu-system-x86_64", "qemu-img")
}

// NeedLibvirt is NeedQEMU plus libvirtd, virtlogd, virsh, unshare and
// nsenter, which the isolated daemon needs.
func NeedLibvirt(t testing.TB) {
	t.Helper()
	need(t, "qemu-system-x86_64", "qemu-img", "libvirtd", "virtlogd", "virsh", "unshare", "nsenter")
}

func need(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if Required() {
		t.Fatalf("QTUNE_LAB=require but %v not found on PATH (install qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients)", missing)
	}
	t.Skipf("integration test needs %v (set QTUNE_LAB=require to make this a failure)", missing)
}
