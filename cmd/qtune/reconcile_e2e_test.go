package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/qmp"
)

// Two always-loud writers a and b are throttled to 256 write IOPS; the
// agent is killed, the rule removed, and b's throttle set to 999 by hand
// while the agent is down. Started again, the agent restores a as soon
// as it can reach it, and leaves b as the person set it, reported as
// drift: no knob is left changed with no owner.
func TestRestartWithoutTheRuleReleasesOnceReachable(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	va, vb := lab.WriterVMT(t, "a", 0), lab.WriterVMT(t, "b", 0)
	dir := t.TempDir()
	for name, vm := range map[string]*lab.VM{"a": va, "b": vb} {
		if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, name+".sock")); err != nil {
			t.Fatal(err)
		}
	}
	rule := "rule \"calm\" {\n  when = disk.write_iops > 100\n  for = \"2s\"\n  throttle { write_iops = 256 }\n}\n"
	ag := startAgentWith(t, bin, rule, "--qmp-dir", dir)
	ag.waitFor(t, 60*time.Second, "both throttled", func(s api.Status) bool {
		return diskWriteLimit(s, "a", "disk0") == 256 && diskWriteLimit(s, "b", "disk0") == 256
	})
	ag.cmd.Process.Signal(syscall.SIGKILL)
	ag.done <- <-ag.done
	if err := os.WriteFile(filepath.Join(ag.policy, "noisy.hcl"), []byte("# the rule is gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	setWriteLimitByHand(t, vb.QMPPath(), 999)

	ag = ag.start(t, bin, "--qmp-dir", dir) // returns after the first cycle
	// The VMs are reachable from the first cycle, which restores a; its
	// figures show in status from the second. Two intervals, and a third
	// for a loaded host.
	st := ag.waitFor(t, 3*e2eInterval, "a restored", func(s api.Status) bool { return diskWriteLimit(s, "a", "disk0") == 0 })
	if got := diskWriteLimit(st, "b", "disk0"); got != 999 {
		t.Fatalf("b's write limit %d, want 999 as set by hand", got)
	}
	if len(st.Owned) != 0 {
		t.Fatalf("owned after the restart: %+v; want nothing left", st.Owned)
	}
	log := ag.log.String()
	if !lineWith(log, "vm=b", "result=drift") || !lineWith(log, "vm=a", "result=reverted") {
		t.Fatalf("the log does not tell the story (a reverted, b drift):\n%s", log)
	}
}

func lineWith(log string, parts ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}

// setWriteLimitByHand sets disk0's write IOPS limit over QMP, as an
// operator would with the agent stopped.
func setWriteLimitByHand(t *testing.T, sock string, iops uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := qmp.NewBlock(c).SetIOThrottle(ctx, qmp.DiskID{QOMPath: "/machine/peripheral/disk0/virtio-backend"}, qmp.IOThrottle{IOPSWrite: iops}); err != nil {
		t.Fatal(err)
	}
}
