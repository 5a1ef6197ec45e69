// Package lab runs real QEMU VMs, guests that do real disk I/O, and an
// isolated libvirtd (or several, with live migration between them; see
// docs/lab.md), for qtune's integration tests, demo and benchmarks.
// Everything it starts lives in its own temporary directory and is stopped
// by PID.
package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Required reports whether integration tests must run: QTUNE_LAB=require
// (set by "make test" and so by CI) turns a missing tool into a failure
// instead of a skip. QTUNE_LAB=off skips every integration test, for a
// quick run of the unit tests alone. A lab flavour (FlavourEnv) asked
// for but not built counts as missing too.
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

// NeedEtcd skips the test when etcd (Debian's etcd-server) is missing,
// or fails it when the lab is required.
func NeedEtcd(t testing.TB) {
	t.Helper()
	need(t, "etcd")
}

// debPackage is the Debian package each tool comes from.
var debPackage = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
	"libvirtd": "libvirt-daemon-system", "virtlogd": "libvirt-daemon-system", "virsh": "libvirt-clients",
	"unshare": "util-linux", "nsenter": "util-linux", "etcd": "etcd-server",
}

func packagesOf(tools []string) string {
	var pkgs []string
	seen := map[string]bool{}
	for _, tool := range tools {
		p := debPackage[tool]
		if p == "" {
			p = tool
		}
		if !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	return strings.Join(pkgs, " ")
}

func need(t testing.TB, tools ...string) {
	t.Helper()
	if os.Getenv("QTUNE_LAB") == "off" {
		t.Skip("QTUNE_LAB=off: unit tests only")
	}
	if why := flavourMissing(); why != "" {
		if Required() {
			t.Fatalf("QTUNE_LAB=require but %s", why)
		}
		t.Skipf("integration test needs the lab flavour: %s", why)
	}
	var missing []string
	for _, tool := range tools {
		if !haveTool(tool) {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if Required() {
		t.Fatalf("QTUNE_LAB=require but %v not found on PATH (install %s)", missing, packagesOf(missing))
	}
	t.Skipf("integration test needs %v (set QTUNE_LAB=require to make this a failure)", missing)
}

// haveTool looks a tool up on PATH, or, for the daemons of a lab flavour
// other than the system's, in the flavour's root, where they run.
func haveTool(tool string) bool {
	if root, _ := FlavourRoot(); root != "" && (tool == "libvirtd" || tool == "virtlogd") {
		_, err := os.Stat(filepath.Join(root, "usr", "sbin", tool))
		return err == nil
	}
	_, err := exec.LookPath(tool)
	return err == nil
}
