package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/policy"
)

func qtuneCmd(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func jobOf(s api.Status, id string) *api.Job {
	for i := range s.Jobs {
		if s.Jobs[i].ID == id {
			return &s.Jobs[i]
		}
	}
	return nil
}

// A mirror started by hand through the control socket, the agent killed
// with SIGKILL in the middle and started again: the job is adopted and
// finished, and the data is identical.
func TestJobsEndToEndMirrorSurvivesAgentKill(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "mover.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "mover", Disks: []lab.Disk{{ID: "disk0", Image: src, CacheDirect: true}},
		Workload: lab.Stamper(loadgen.Phase{Pattern: loadgen.StampWrite, Rate: 300, Duration: 3 * time.Second},
			loadgen.Phase{Pattern: loadgen.Idle, Duration: 15 * time.Second}, loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})})
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.WaitSerial(wctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	dir, fast := t.TempDir(), t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "mover.sock")); err != nil {
		t.Fatal(err)
	}
	args := []string{"--qmp-dir", dir, "--allow-mirror-dir", fast}
	a := startAgent(t, bin, args...)
	a.waitFor(t, 20*time.Second, "the VM sampled", func(s api.Status) bool { return len(s.VMs) == 1 })
	sock := filepath.Join(a.state, "control.sock")
	out, err := qtuneCmd(t, bin, "jobs", "start", "mirror", "mover", "disk0", "--target-dir", fast, "--speed", "2MiB", "--socket", sock)
	if err != nil || !strings.Contains(out, "planned qtune-mirror-mover-disk0-") {
		t.Fatalf("jobs start: %v\n%s", err, out)
	}
	id := strings.Fields(out)[1]
	a.waitFor(t, 30*time.Second, "the mirror under way", func(s api.Status) bool {
		j := jobOf(s, id)
		return j != nil && j.State == api.JobRunning && j.Progress.Offset > 0
	})
	if out, _ := qtuneCmd(t, bin, "jobs", "--socket", sock); !strings.Contains(out, id) || !strings.Contains(out, "running") || !strings.Contains(out, "/s") {
		t.Errorf("qtune jobs while running:\n%s", out)
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.done <- <-a.done // the cleanup waits for it again

	b := a.start(t, bin, args...)
	s := b.waitFor(t, 90*time.Second, "the mirror done", func(s api.Status) bool {
		j := jobOf(s, id)
		return j != nil && j.State.Final()
	})
	j := jobOf(s, id)
	if j.State != api.JobDone || !j.Pivoted {
		t.Fatalf("job %s: %s", j.State, j.Error)
	}
	if !strings.Contains(b.log.String(), "adopting it") {
		t.Errorf("the restarted agent did not report the adoption:\n%s", b.log.String())
	}
	if m := b.metrics(t); !strings.Contains(m, `qtune_job_state{disk="disk0",id="`+id+`",kind="mirror",reason="",state="done",vm="mover"} 1`) {
		t.Errorf("job metrics:\n%s", grepLines(m, "qtune_job_"))
	}
	if out, _ := qtuneCmd(t, bin, "status", "--addr", b.addr); !strings.Contains(out, "BLOCK JOBS") || !strings.Contains(out, "kept: ") || !strings.Contains(out, "free to delete") ||
		strings.Contains(out, "NOT MIGRATABLE") {
		t.Errorf("qtune status:\n%s", out)
	}
	vctx, vcancel := context.WithTimeout(ctx, time.Minute)
	defer vcancel()
	if err := vm.WaitSerial(vctx, "qtune-verify"); err != nil || !strings.Contains(vm.Serial(), "qtune-verify ok") {
		t.Fatalf("the guest's data after the pivot (%v):\n%s", err, vm.Serial())
	}
	vm.Stop()
	if same, err := lab.Compare(ctx, src, j.Dest); err != nil || !same {
		t.Fatalf("qemu-img compare %s %s: identical=%v %v", src, j.Dest, same, err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The control socket: root gets in; another user gets neither through the
// file mode nor, when the mode is loosened, past the peer-credential
// check.
func TestControlSocketRefusesOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		if lab.Required() {
			t.Fatal("needs root to run a client as nobody")
		}
		t.Skip("needs root to run a client as nobody")
	}
	bin := buildQtune(t)
	open, err := os.MkdirTemp("", "qtune-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	os.Chmod(open, 0o755)
	pub := filepath.Join(open, "qtune")
	if b, err := os.ReadFile(bin); err != nil || os.WriteFile(pub, b, 0o755) != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(open, "control.sock")
	// A group nobody is not in: only its members and root get in.
	startAgent(t, bin, "--qmp-dir", t.TempDir(), "--control-socket", sock, "--control-group", "root")
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o660 || st.Sys().(*syscall.Stat_t).Gid != 0 {
		t.Fatalf("control socket mode: %v %v", st.Mode(), err)
	}
	if out, err := qtuneCmd(t, pub, "jobs", "--socket", sock); err != nil || !strings.Contains(out, "no jobs") {
		t.Fatalf("root: %v\n%s", err, out)
	}
	asNobody := func() (string, error) {
		cmd := exec.Command(pub, "jobs", "start", "stream", "vm", "vda", "--socket", sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody(); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("nobody through a 0660 socket: %v\n%s", err, out)
	}
	os.Chmod(sock, 0o666)
	if out, err := asNobody(); err == nil || !strings.Contains(out, "403") || !strings.Contains(out, "neither root nor in the control group") {
		t.Fatalf("nobody through a loosened socket: %v\n%s", err, out)
	}
}

// A stream asked for by a rule runs to its end on one VM while the QEMU
// of another, in the middle of a mirror, is killed: that job fails with
// the reason, and the agent goes on serving the first VM.
func TestJobsEndToEndPolicyStreamAndQEMUKilled(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	ctx := context.Background()
	chain, err := lab.Chain(ctx, t.TempDir(), 2, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range chain {
		if err := lab.WritePattern(ctx, img, "qcow2", byte(0x30+i), uint64(i)<<20, 4<<20); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(t.TempDir(), "doomed.qcow2")
	if err := lab.CreateImage(ctx, src, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WritePattern(ctx, src, "qcow2", 0x5a, 0, 32<<20); err != nil {
		t.Fatal(err)
	}
	chained := lab.StartVMT(t, lab.VMConfig{Name: "chained", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: chain[0]}}})
	doomed := lab.StartVMT(t, lab.VMConfig{Name: "doomed", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: src}}})
	dir, fast := t.TempDir(), t.TempDir()
	for _, vm := range []*lab.VM{chained, doomed} {
		if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, vm.Name+".sock")); err != nil {
			t.Fatal(err)
		}
	}
	a := startAgent(t, bin, "--qmp-dir", dir, "--allow-mirror-dir", fast)
	a.waitFor(t, 20*time.Second, "both VMs sampled", func(s api.Status) bool { return len(s.VMs) == 2 })
	sock := filepath.Join(a.state, "control.sock")
	out, err := qtuneCmd(t, bin, "jobs", "start", "mirror", "doomed", "disk0", "--target-dir", fast, "--speed", "1MiB", "--socket", sock)
	if err != nil {
		t.Fatalf("jobs start: %v\n%s", err, out)
	}
	mirror := strings.Fields(out)[1]
	a.waitFor(t, 30*time.Second, "the mirror under way", func(s api.Status) bool {
		j := jobOf(s, mirror)
		return j != nil && j.State == api.JobRunning
	})
	rule := "rule \"flatten\" {\n  match { domain = \"chained\" }\n  when = disk.backing_depth > 0\n  for  = \"2s\"\n  stream { speed = \"8MiB\" }\n}\n"
	if err := os.WriteFile(filepath.Join(a.policy, "flatten.hcl"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	doomed.Signal(syscall.SIGKILL)
	s := a.waitFor(t, 30*time.Second, "the mirror failed", func(s api.Status) bool {
		j := jobOf(s, mirror)
		return j != nil && j.State.Final()
	})
	if j := jobOf(s, mirror); j.State != api.JobFailed || !strings.Contains(j.Error, "went away") {
		t.Fatalf("mirror on a killed QEMU: %s %q", j.State, j.Error)
	}
	// The reason where an SRE looks: qtune jobs, and the metric's label.
	if out, err := qtuneCmd(t, bin, "jobs", "--socket", sock); err != nil || !strings.Contains(out, "went away") {
		t.Errorf("qtune jobs (%v):\n%s", err, out)
	}
	if m := a.metrics(t); !strings.Contains(m, `id="`+mirror+`",kind="mirror",reason="vm_gone",state="failed"`) {
		t.Errorf("no failed qtune_job_state with its reason:\n%s", m)
	}
	s = a.waitFor(t, 60*time.Second, "the rule's stream done", func(s api.Status) bool {
		for _, j := range s.Jobs {
			if j.VM == "chained" && j.Kind == policy.KnobStream && j.State.Final() {
				return true
			}
		}
		return false
	})
	for _, j := range s.Jobs {
		if j.VM == "chained" && (j.State != api.JobDone || j.Rule != "flatten") {
			t.Fatalf("stream: %+v", j)
		}
	}
	// Still sampling the VM that lives.
	s = a.waitFor(t, 10*time.Second, "fresh samples of the live VM", func(s api.Status) bool {
		for _, vm := range s.VMs {
			if vm.Name == "chained" && len(vm.Disks) > 0 && time.Since(vm.Disks[0].SampledAt) < 3*time.Second {
				return true
			}
		}
		return false
	})
	chained.Stop()
	info, err := lab.Info(ctx, chain[0])
	if err != nil || len(info) != 1 {
		t.Fatalf("chain after the stream: %+v %v", info, err)
	}
}
