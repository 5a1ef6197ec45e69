package facts

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A plain QEMU's identity is the process behind its socket; when that
// process or its start cannot be known, the identity says why and is
// not known (the VM is matched by name).
func TestQEMUIdentity(t *testing.T) {
	id, note := qemuIdentity("/run/qtune/a.sock", os.Getpid())
	if !id.Known() || note != "" || id.PID != os.Getpid() || time.Since(id.Started) > time.Hour {
		t.Fatalf("identity of this process: %+v %q", id, note)
	}
	for _, pid := range []int{0, 1 << 30} {
		id, note := qemuIdentity("/run/qtune/a.sock", pid)
		if id.Known() || note == "" || id.Socket != "/run/qtune/a.sock" {
			t.Errorf("pid %d: %+v %q; want unknown, with a reason", pid, id, note)
		}
	}
}

// Under a local libvirtd a domain's identity has its QEMU process, from
// libvirt's pid file: a domain started again keeps its UUID but not the
// live changes made by passthrough. Without a pid file it is the UUID.
func TestLibvirtIdentityHasTheQEMUProcess(t *testing.T) {
	s, _, _ := newFakeSource(t)
	s.pidDir = t.TempDir()
	s.uuids = map[string]string{"d1": "u1", "d2": "u2"}
	if err := os.WriteFile(filepath.Join(s.pidDir, "d1.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id, _ := s.identity("d1")
	if id.UUID != "u1" || id.PID != os.Getpid() || id.StartTicks == 0 || id.Boot == "" {
		t.Fatalf("identity %+v; want the UUID and this process", id)
	}
	if id, _ := s.identity("d2"); id.UUID != "u2" || id.PID != 0 {
		t.Fatalf("identity without a pid file %+v; want the UUID alone", id)
	}
}
