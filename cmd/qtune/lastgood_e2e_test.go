package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
)

// diskWriteLimit is the write IOPS limit in force on vm's disk, as the
// agent last sampled it; -1 when the disk is not seen.
func diskWriteLimit(s api.Status, vm, disk string) int64 {
	for _, v := range s.VMs {
		if v.Name != vm {
			continue
		}
		for _, d := range v.Disks {
			if d.Name == disk {
				if d.Throttle == nil {
					return 0
				}
				return int64(d.Throttle.IOPSWrite)
			}
		}
	}
	return -1
}

const lastGoodRule = "rule \"calm\" {\n  when = disk.write_iops > 100\n  for = \"2s\"\n  clear_after = \"3s\"\n  throttle { write_iops = 150 }\n}\n"

// A throttle qtune holds survives a restart with a typo in the policy
// directory: the last good set runs from the state store. Fixing the
// typo brings the files back in force; removing the rule cleanly, and
// only that, releases the throttle.
func TestBrokenPolicyAtRestartKeepsTheThrottle(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	vm := lab.WriterVMT(t, "loud", 0)
	dir := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "loud.sock")); err != nil {
		t.Fatal(err)
	}
	brokenPolicyScenario(t, bin, "loud", "disk0", "--qmp-dir", dir)
}

// The same under libvirt: the throttle is libvirt's <iotune>, read back
// through libvirt after every step.
func TestBrokenPolicyAtRestartKeepsTheThrottleLibvirt(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	bin := buildQtune(t)
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "loud", 0)
	brokenPolicyScenario(t, bin, "loud", "vda", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"))
}

func brokenPolicyScenario(t *testing.T, bin, vm, disk string, backend ...string) {
	limit := func(s api.Status) int64 { return diskWriteLimit(s, vm, disk) }
	a := startAgentWith(t, bin, lastGoodRule, backend...)
	a.waitFor(t, 60*time.Second, "the throttle", func(s api.Status) bool { return limit(s) == 150 })

	a.cmd.Process.Signal(syscall.SIGKILL)
	a.done <- <-a.done // its cleanup waits for it too
	typo := filepath.Join(a.policy, "typo.hcl")
	if err := os.WriteFile(typo, []byte("rule \"other\" {\n  when = disk.write_iops >\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a = a.start(t, bin, backend...)
	time.Sleep(6 * e2eInterval)
	st := a.status(t)
	if got := limit(st); got != 150 {
		t.Fatalf("write limit %d after a restart with a broken policy, want 150 kept\nlog:\n%s", got, a.log.String())
	}
	if st.Policy.Source != api.PolicyFromStore || !strings.Contains(st.Policy.Error, "typo.hcl") || st.Policy.LoadedAt.IsZero() {
		t.Fatalf("policy status %+v: want the last good set in force and the broken file named", st.Policy)
	}
	if out, _ := qtuneCmd(t, bin, "status", "--addr", a.addr); !strings.Contains(out, "DOES NOT LOAD") || !strings.Contains(out, "last good set") {
		t.Fatalf("qtune status does not say which set is in force:\n%s", out)
	}
	checkBeforeReload(t, bin, a)

	// The typo fixed: the files are in force again, the throttle held.
	if err := os.Remove(typo); err != nil {
		t.Fatal(err)
	}
	if out, err := qtuneCmd(t, bin, "policy", "check", "--against-agent", "--addr", a.addr); err != nil ||
		!strings.Contains(out, "no differences") {
		t.Fatalf("policy check --against-agent with the typo fixed: %v\n%s", err, out)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitFor(t, 20*time.Second, "the files in force", func(s api.Status) bool { return s.Policy.Source == api.PolicyFromFiles })
	if got := limit(a.status(t)); got != 150 {
		t.Fatalf("write limit %d after the typo was fixed, want 150", got)
	}

	// The rule removed cleanly: now, and only now, the throttle goes.
	if err := os.WriteFile(filepath.Join(a.policy, "noisy.hcl"), []byte("# no rules\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitFor(t, 30*time.Second, "the throttle released", func(s api.Status) bool { return limit(s) == 0 })
}

// checkBeforeReload asks, while the last good set runs, what a reload
// of the broken directory and what a plan without the rule would do.
func checkBeforeReload(t *testing.T, bin string, a *runningAgent) {
	t.Helper()
	out, err := qtuneCmd(t, bin, "policy", "check", "--against-agent", "--addr", a.addr)
	if err == nil || !strings.Contains(out, "a reload would fail") || !strings.Contains(out, "last good set") {
		t.Fatalf("policy check --against-agent on the broken directory: %v\n%s", err, out)
	}
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "none.hcl"), []byte("# no rules\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = qtuneCmd(t, bin, "plan", "--addr", a.addr, "--policy", empty)
	if err != nil || !strings.Contains(out, "compares with that stored set") || !strings.Contains(out, "- calm: only in the set in force") ||
		!strings.Contains(out, "release throttle of") {
		t.Fatalf("plan against the last good set: %v\n%s", err, out)
	}
}
