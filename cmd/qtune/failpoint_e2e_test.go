package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// buildFailpointQtune builds the agent with its failpoints compiled in.
func buildFailpointQtune(t *testing.T) string { return builtBinary(t, "failpoints") }

// rawKnob reads disk0's knob straight from QEMU, as the agent would
// (the agent is down: the monitor is free).
func rawKnob(t *testing.T, vm *lab.VM, k policy.Knob) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, vm.QMPPath())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := tuning.NewQMPBackend()
	b.AddVM("loud", c, vm.PID())
	s, err := b.Read(ctx, state.Target{VM: "loud", Disk: "disk0"}, k)
	if err != nil {
		t.Fatal(err)
	}
	return s.String()
}

// failpointRules change one knob of an always-loud writer.
var failpointRules = map[policy.Knob]string{
	policy.KnobThrottle: "throttle { write_iops = 150 }",
	policy.KnobCache:    "cache { direct = false }",
	policy.KnobL2Cache:  "l2_cache { size = \"2MiB\" }",
}

func failpointRule(k policy.Knob) string {
	return "rule \"change\" {\n  when = disk.write_iops > 100\n  for = \"1s\"\n  clear_after = \"2s\"\n  " + failpointRules[k] + "\n}\n"
}

// The agent kills itself (SIGKILL) at each failpoint of a change of each
// knob, and is started again with the same policy or with the rule
// removed: the knob ends held by the rule (its record applied) or
// restored (nothing owned), never changed with no owner.
func TestFailpointsQMP(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildFailpointQtune(t)
	vm := lab.WriterVMT(t, "loud", 0)
	dir := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "loud.sock")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []policy.Knob{policy.KnobThrottle, policy.KnobCache, policy.KnobL2Cache} {
		original := rawKnob(t, vm, k)
		rule := failpointRule(k)
		for _, step := range tuning.Failpoints {
			for _, removed := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/%s", k, step, map[bool]string{false: "same-policy", true: "rule-removed"}[removed])
				read := func() string { return rawKnob(t, vm, k) }
				t.Run(name, func(t *testing.T) { crashAndRestart(t, bin, read, k, step, rule, original, removed, "--qmp-dir", dir) })
			}
		}
	}
}

// crashAndRestart kills the agent at step of a change of k, restarts it
// and checks what the knob ends as; read reads the knob with the agent
// down.
func crashAndRestart(t *testing.T, bin string, read func() string, k policy.Knob, step, rule, original string, removed bool, backend ...string) {
	a := startAgentEnv(t, bin, rule, []string{"QTUNE_FAILPOINT=" + step + ":" + string(k)}, backend...)
	select {
	case <-a.done:
		a.done <- nil // its cleanup waits for it too
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent did not reach failpoint %s:\n%s", step, a.log.String())
	}
	// QEMU cannot report a qcow2 cache size: what a fresh monitor "reads"
	// is the command line, so only the records and the log can tell.
	readable := tuning.ReadsBack(k)
	killed := read()
	if readable && (step == tuning.FailAfterIntent) != (killed == original) {
		t.Fatalf("killed at %s: %s is %s (original %s)", step, k, killed, original)
	}
	a.env = nil
	if removed {
		removeRule(t, a)
	}
	a = a.start(t, bin, backend...)
	if !removed {
		st := a.waitFor(t, 20*time.Second, "the knob held, its record applied", func(s api.Status) bool {
			return len(s.Owned) == 1 && s.Owned[0].State == api.OwnedHeld && s.Owned[0].Phase == state.PhaseApplied
		})
		if st.Owned[0].Applied.String() == original || st.Owned[0].Original.String() != original {
			t.Fatalf("held %+v; want a change from %s", st.Owned[0], original)
		}
		if !readable {
			waitRecordedL2(t, a, "loud", 2<<20)
		}
		removeRule(t, a)
		a.cmd.Process.Signal(syscall.SIGHUP)
	}
	a.waitFor(t, 20*time.Second, "nothing owned", func(s api.Status) bool { return len(s.Owned) == 0 })
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.done <- <-a.done
	if got := read(); readable && got != original {
		t.Fatalf("%s is %s with nothing owned, want the original %s", k, got, original)
	}
	if !readable && step != tuning.FailAfterIntent || !readable && !removed {
		// The change reached QEMU (or was made again by the held rule):
		// the original must have been set, not assumed.
		if !lineWith(a.log.String(), "knob="+string(k), "before=l2-cache-size=2097152", "after="+original) {
			t.Fatalf("no decision set %s back to %s:\n%s", k, original, grepLines(a.log.String(), "tuning action"))
		}
	}
	t.Logf("killed at %s with %s at %s (original %s); restarted, rule removed %v; decisions:\n%s",
		step, k, killed, original, removed, grepLines(a.log.String(), "tuning action"))
}

func removeRule(t *testing.T, a *runningAgent) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(a.policy, "noisy.hcl"), []byte("# the rule is gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Killed between the change and its record, then the throttle set by hand
// while the agent is down: at restart with the same policy the agent
// leaves it as the person set it and reports drift; once the rule is
// removed the record goes and the hand-set value stays.
func TestFailpointThenHandChangeIsDrift(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildFailpointQtune(t)
	vm := lab.WriterVMT(t, "loud", 0)
	dir := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "loud.sock")); err != nil {
		t.Fatal(err)
	}
	a := startAgentEnv(t, bin, failpointRule(policy.KnobThrottle), []string{"QTUNE_FAILPOINT=" + tuning.FailAfterChange + ":throttle"}, "--qmp-dir", dir)
	select {
	case <-a.done:
		a.done <- nil
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent did not reach the failpoint:\n%s", a.log.String())
	}
	setWriteLimitByHand(t, vm.QMPPath(), 999)
	a.env = nil
	a = a.start(t, bin, "--qmp-dir", dir)
	st := a.waitFor(t, 20*time.Second, "the knob handed over", func(s api.Status) bool {
		return len(s.Owned) == 1 && s.Owned[0].State == api.OwnedDrifted && diskWriteLimit(s, "loud", "disk0") != -1
	})
	if got := diskWriteLimit(st, "loud", "disk0"); got != 999 || !lineWith(a.log.String(), "vm=loud", "result=drift") {
		t.Fatalf("write limit %d, want 999 as set by hand and a drift line in the log:\n%s", got, a.log.String())
	}
	removeRule(t, a)
	a.cmd.Process.Signal(syscall.SIGHUP)
	st = a.waitFor(t, 20*time.Second, "nothing owned", func(s api.Status) bool { return len(s.Owned) == 0 })
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.done <- <-a.done
	if got := rawKnob(t, vm, policy.KnobThrottle); got != "iops_wr=999" {
		t.Fatalf("throttle %s after the rule was removed, want iops_wr=999 kept", got)
	}
	t.Logf("decisions:\n%s", grepLines(a.log.String(), "tuning action"))
}
