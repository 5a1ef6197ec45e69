package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/agent"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/tuning"
)

// buildFailpointQtune builds the agent with its failpoints compiled in.
func buildFailpointQtune(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qtune")
	out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build qtune with failpoints: %v\n%s", err, out)
	}
	return bin
}

// rawWriteLimit reads disk0's write IOPS limit straight from QEMU (the
// agent is down: the monitor is free).
func rawWriteLimit(t *testing.T, sock string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	disks, err := qmp.NewBlock(c).SampleDisks(ctx, "loud", qmp.SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		if d.Name == "disk0" {
			return d.Throttle.IOPSWrite
		}
	}
	t.Fatalf("no disk0 in %+v", disks)
	return 0
}

const failpointRule = "rule \"calm\" {\n  when = disk.write_iops > 100\n  for = \"2s\"\n  clear_after = \"2s\"\n  throttle { write_iops = 150 }\n}\n"

// The agent is killed (SIGKILL, by itself) at each failpoint of the
// throttle's change, and started again with the same policy or with the
// rule removed: the throttle ends held (record applied) or restored
// (nothing owned), never changed with no owner.
func TestFailpointsThrottleQMP(t *testing.T) {
	lab.NeedQEMU(t)
	bin := buildFailpointQtune(t)
	vm := lab.WriterVMT(t, "loud", 0)
	dir := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "loud.sock")); err != nil {
		t.Fatal(err)
	}
	changedAt := map[string]uint64{tuning.FailAfterIntent: 0, tuning.FailAfterChange: 150, tuning.FailAfterReadBack: 150}
	for _, step := range tuning.Failpoints {
		for _, removed := range []bool{false, true} {
			t.Run(step+map[bool]string{false: "/same-policy", true: "/rule-removed"}[removed], func(t *testing.T) {
				t.Setenv("QTUNE_FAILPOINT", step+":throttle")
				a := startAgentWith(t, bin, failpointRule, "--qmp-dir", dir)
				select {
				case <-a.done:
					a.done <- nil // its cleanup waits for it too
				case <-time.After(60 * time.Second):
					t.Fatalf("the agent did not reach failpoint %s:\n%s", step, a.log.String())
				}
				if got := rawWriteLimit(t, vm.QMPPath()); got != changedAt[step] {
					t.Fatalf("killed at %s: write limit %d, want %d", step, got, changedAt[step])
				}
				t.Setenv("QTUNE_FAILPOINT", "")
				if removed {
					if err := os.WriteFile(filepath.Join(a.policy, "noisy.hcl"), []byte("# the rule is gone\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				a = a.start(t, bin, "--qmp-dir", dir)
				checkSettled(t, a, removed)
				t.Logf("killed at %s with the limit at %d; restarted (rule removed: %v); decisions:\n%s",
					step, changedAt[step], removed, grepLines(a.log.String(), "tuning action"))
			})
		}
	}
}

// checkSettled waits for the throttle to be held by the rule (record
// applied) or, with the rule removed, restored with nothing owned; then
// it leaves the VM unthrottled for the next case.
func checkSettled(t *testing.T, a *runningAgent, removed bool) {
	t.Helper()
	if removed {
		a.waitFor(t, 20*time.Second, "the throttle restored, nothing owned", func(s agent.Status) bool {
			return diskWriteLimit(s, "loud", "disk0") == 0 && len(s.Owned) == 0
		})
		return
	}
	a.waitFor(t, 20*time.Second, "the throttle held, its record applied", func(s agent.Status) bool {
		return diskWriteLimit(s, "loud", "disk0") == 150 && len(s.Owned) == 1 &&
			s.Owned[0].State == agent.OwnedHeld && s.Owned[0].Phase == tuning.PhaseApplied
	})
	if err := os.WriteFile(filepath.Join(a.policy, "noisy.hcl"), []byte("# done\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitFor(t, 20*time.Second, "the throttle released", func(s agent.Status) bool {
		return diskWriteLimit(s, "loud", "disk0") == 0 && len(s.Owned) == 0
	})
}
