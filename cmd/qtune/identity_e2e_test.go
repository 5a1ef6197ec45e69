package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
)

// ownedOf is the throttle record of vm's disk in status, nil when there
// is none.
func ownedOf(s api.Status, vm, disk string) *api.OwnedStatus {
	for i, o := range s.Owned {
		if o.VM == vm && o.Disk == disk && o.Knob == policy.KnobThrottle {
			return &s.Owned[i]
		}
	}
	return nil
}

// The agent holds a throttle on a; it is killed, a's QEMU is stopped and
// a new one started with the same name and socket, without the limit
// the first had before qtune (5000) or qtune's (256). Started again, the
// agent knows the new process is another VM: the old record is
// forgotten (said in the decision log), the new VM is not reported as
// drift, and the rule, which still fires, throttles it afresh as a new
// ownership whose original is the new VM's own (no limit). The same
// again with the agent running.
func TestQEMURestartedWhileDownIsANewVM(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	// The agent sees the socket through a link, so that a QEMU replacing
	// it (unlink, bind) stirs nothing in the directory it watches: only
	// the process behind the socket changes.
	dir, sock := t.TempDir(), filepath.Join(t.TempDir(), "a.sock")
	if err := os.Symlink(sock, filepath.Join(dir, "a.sock")); err != nil {
		t.Fatal(err)
	}
	qmpArg := "unix:" + sock + ",server=on,wait=off"
	first := lab.WriterVMT(t, "a", 0, "-qmp", qmpArg)
	setWriteLimitByHand(t, sock, 5000)
	rule := "rule \"calm\" {\n  when = disk.write_iops > 100\n  for = \"2s\"\n  throttle { write_iops = 256 }\n}\n"
	ag := startAgentWith(t, bin, rule, "--qmp-dir", dir)
	st := ag.waitFor(t, 60*time.Second, "a throttled", func(s api.Status) bool {
		o := ownedOf(s, "a", "disk0")
		return diskWriteLimit(s, "a", "disk0") == 256 && o != nil && o.State == api.OwnedHeld
	})
	if o := ownedOf(st, "a", "disk0"); o.VMID.PID != first.PID() || o.Original.Throttle.IOPSWrite != 5000 {
		t.Fatalf("record %+v: want taken on pid %d, original 5000", o, first.PID())
	}
	ag.cmd.Process.Signal(syscall.SIGKILL)
	ag.done <- <-ag.done
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second := lab.WriterVMT(t, "a", 0, "-qmp", qmpArg)

	ag = ag.start(t, bin, "--qmp-dir", dir)
	st = ag.waitFor(t, 30*time.Second, "a throttled afresh", func(s api.Status) bool {
		o := ownedOf(s, "a", "disk0")
		return diskWriteLimit(s, "a", "disk0") == 256 && o != nil && o.VMID.PID == second.PID() && o.State == api.OwnedHeld
	})
	if o := ownedOf(st, "a", "disk0"); o.Original.Throttle.Active() {
		t.Fatalf("new record's original %s, want the new VM's own (no limit)", o.Original)
	}
	log := ag.log.String()
	forgotten := fmt.Sprintf("vm a is a new QEMU process (pid %d", second.PID())
	if !lineWith(log, "vm=a", "result=forgotten", forgotten, fmt.Sprintf("was pid %d", first.PID())) {
		t.Fatalf("the log does not say the old record was forgotten:\n%s", log)
	}
	if lineWith(log, "vm=a", "result=drift") {
		t.Fatalf("the new VM was reported as drift:\n%s", log)
	}
	out, _ := qtuneCmd(t, bin, "status", "--addr", ag.addr)
	if !strings.Contains(out, fmt.Sprintf("taken on qemu pid %d started ", second.PID())) {
		t.Fatalf("qtune status does not show the VM the knob was taken on:\n%s", out)
	}

	// The same with the agent running: QEMU killed (its socket file left
	// behind) and started again on the same path. The runner reconnects
	// to the new process, which is another VM.
	second.Signal(syscall.SIGKILL)
	second.Stop()
	third := lab.WriterVMT(t, "a", 0, "-qmp", qmpArg)
	ag.waitFor(t, 30*time.Second, "a throttled afresh on the third QEMU", func(s api.Status) bool {
		o := ownedOf(s, "a", "disk0")
		return diskWriteLimit(s, "a", "disk0") == 256 && o != nil && o.VMID.PID == third.PID() && o.State == api.OwnedHeld
	})
	forgotten = fmt.Sprintf("vm a is a new QEMU process (pid %d", third.PID())
	if log := ag.log.String(); !lineWith(log, "vm=a", "result=forgotten", forgotten, fmt.Sprintf("was pid %d", second.PID())) ||
		lineWith(log, "vm=a", "result=drift") {
		t.Fatalf("the log does not say the second QEMU's record was forgotten, or says drift:\n%s", log)
	}
	for _, l := range strings.Split(ag.log.String(), "\n") {
		if strings.Contains(l, "tuning action") {
			t.Log(l)
		}
	}
}

// libvirtRedefined undefines t1 and defines a new domain under the same
// name, which libvirt gives a new UUID. The record of the old t1 is
// forgotten as the old domain's, the new one is not drift, and the
// rule, still firing on the loud new t1, takes its throttle afresh: on
// the new UUID, with the new domain's own value as the original.
func libvirtRedefined(t *testing.T, ctx context.Context, a *runningAgent, d *lab.Libvirtd) {
	t.Helper()
	uuid := func() string {
		out, err := d.Virsh(ctx, "domuuid", "t1")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	was := uuid()
	a.waitFor(t, 30*time.Second, "a record of t1 taken on "+was, func(s api.Status) bool {
		o := ownedOf(s, "t1", "vda")
		return o != nil && o.VMID.UUID == was
	})
	for _, step := range []string{"destroy", "undefine"} {
		if _, err := d.Virsh(ctx, step, "t1"); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(d.Dir, "t1-serial.log")) // the new guest's "ready" must be its own
	redefined := time.Now()
	d.WriterDomainT(t, "t1", 0)
	now := uuid()
	if now == was {
		t.Fatalf("the new t1 has the old one's UUID %s", now)
	}
	s := a.waitFor(t, 40*time.Second, "the new t1 throttled afresh", func(s api.Status) bool {
		o := ownedOf(s, "t1", "vda")
		return o != nil && o.VMID.UUID == now && o.State == api.OwnedHeld
	})
	t.Logf("t1 defined anew: uuid %s, was %s; throttled afresh %v after", now, was, time.Since(redefined).Round(100*time.Millisecond))
	if o := ownedOf(s, "t1", "vda"); o.Original.Throttle.Active() {
		t.Errorf("new record's original %s, want the new domain's own (no limit)", o.Original)
	}
	want := fmt.Sprintf("vm t1 is a different domain (uuid %s, was %s): records of the old one forgotten", now, was)
	if !lineWith(a.log.String(), "vm=t1", "result=forgotten", want) {
		t.Errorf("no decision log line %q", want)
	}
	for _, act := range s.Actions {
		if act.VM == "t1" && act.Result == "drift" && act.At.After(redefined) {
			t.Errorf("the new t1 was reported as drift: %+v", act)
		}
	}
}
