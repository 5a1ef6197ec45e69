package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/agent"
	"github.com/qtune/qtune/internal/lab"
)

// diskWriteLimit is the write IOPS limit in force on vm's disk0, as the
// agent last sampled it from QEMU; -1 when the disk is not seen.
func diskWriteLimit(s agent.Status, vm string) int64 {
	for _, v := range s.VMs {
		if v.Name != vm {
			continue
		}
		for _, d := range v.Disks {
			if d.Name == "disk0" {
				if d.Throttle == nil {
					return 0
				}
				return int64(d.Throttle.IOPSWrite)
			}
		}
	}
	return -1
}

// A throttle qtune holds survives a restart with a typo in the policy
// directory: the last good set runs from the state store. Fixing the
// typo brings the files back in force; removing the rule cleanly, and
// only that, releases the throttle.
func TestBrokenPolicyAtRestartKeepsTheThrottle(t *testing.T) {
	lab.NeedQEMU(t)
	bin := buildQtune(t)
	vm := lab.WriterVMT(t, "loud", 0)
	dir := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "loud.sock")); err != nil {
		t.Fatal(err)
	}
	rule := "rule \"calm\" {\n  when = disk.write_iops > 400\n  for = \"2s\"\n  clear_after = \"3s\"\n  throttle { write_iops = 150 }\n}\n"
	a := startAgentWith(t, bin, rule, "--qmp-dir", dir)
	a.waitFor(t, 60*time.Second, "the throttle", func(s agent.Status) bool { return diskWriteLimit(s, "loud") == 150 })

	a.cmd.Process.Signal(syscall.SIGKILL)
	a.done <- <-a.done // its cleanup waits for it too
	typo := filepath.Join(a.policy, "typo.hcl")
	if err := os.WriteFile(typo, []byte("rule \"other\" {\n  when = disk.write_iops >\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a = a.start(t, bin, "--qmp-dir", dir)
	time.Sleep(6 * e2eInterval)
	st := a.status(t)
	if got := diskWriteLimit(st, "loud"); got != 150 {
		t.Fatalf("write limit %d after a restart with a broken policy, want 150 kept\nlog:\n%s", got, a.log.String())
	}
	if st.Policy.Source != agent.PolicyFromStore || !strings.Contains(st.Policy.Error, "typo.hcl") || st.Policy.LoadedAt.IsZero() {
		t.Fatalf("policy status %+v: want the last good set in force and the broken file named", st.Policy)
	}
	if out, _ := qtuneCmd(t, bin, "status", "--addr", a.addr); !strings.Contains(out, "DOES NOT LOAD") || !strings.Contains(out, "last good set") {
		t.Fatalf("qtune status does not say which set is in force:\n%s", out)
	}

	// The typo fixed: the files are in force again, the throttle held.
	if err := os.Remove(typo); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitFor(t, 20*time.Second, "the files in force", func(s agent.Status) bool { return s.Policy.Source == agent.PolicyFromFiles })
	if got := diskWriteLimit(a.status(t), "loud"); got != 150 {
		t.Fatalf("write limit %d after the typo was fixed, want 150", got)
	}

	// The rule removed cleanly: now, and only now, the throttle goes.
	if err := os.WriteFile(filepath.Join(a.policy, "noisy.hcl"), []byte("# no rules\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitFor(t, 30*time.Second, "the throttle released", func(s agent.Status) bool { return diskWriteLimit(s, "loud") == 0 })
}
