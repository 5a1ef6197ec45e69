package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"

	"github.com/qtune/qtune/doctor"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/qmp"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files")

// waitRunState polls QEMU until the VM reaches state (the socket is
// closed again: it serves one client at a time).
func waitRunState(ctx context.Context, t *testing.T, sock, state string) {
	t.Helper()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := qmp.NewBlock(c)
	for {
		st, err := b.QueryStatus(ctx)
		if err != nil {
			t.Fatalf("waiting for run state %s: %v", state, err)
		}
		if st.Status == state {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("VM still %q, want %q", st.Status, state)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// A thin image on a 16 MiB filesystem: the guest writes until the
// filesystem is full, QEMU pauses the VM (werror=stop), and the doctor
// finds it critical: exit status 2.
func TestDoctorVMPausedOnFullFilesystem(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := lab.TmpfsT(t, "16m")
	img := filepath.Join(dir, "full.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Loops, w.BlockSize = 0, 64<<10
	w.Phases = []loadgen.Phase{{Pattern: loadgen.SeqWrite, Duration: time.Hour}}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "full", Workload: &w,
		Disks: []lab.Disk{{ID: "disk0", Image: img, WError: "stop"}}})
	waitRunState(ctx, t, vm.QMPPath(), "io-error")
	sock := filepath.Join(t.TempDir(), "full.sock") // the VM's name in the reports
	if err := os.Symlink(vm.QMPPath(), sock); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	code := run(ctx, []string{"doctor", "--qmp", sock, "--json", "--interval", "500ms"}, &out, &errb)
	if code != 2 {
		t.Fatalf("exit %d, want 2 (critical)\n%s%s", code, out.String(), errb.String())
	}
	var doc struct {
		Worst   string          `json:"worst"`
		Reports []doctor.Report `json:"reports"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Reports) != 1 || doc.Worst != "critical" {
		t.Fatalf("%v: %s", err, out.String())
	}
	sev := map[string]string{}
	for _, f := range doc.Reports[0].Findings {
		sev[f.Check] = f.Severity.String()
	}
	for check, want := range map[string]string{"vm_io_error": "critical", "io_status": "critical", "fs_space": "critical", "filesystem": "warn"} {
		if sev[check] != want {
			t.Errorf("%s: %q, want %s\n%s", check, sev[check], want, out.String())
		}
	}
	if !strings.Contains(out.String(), `"io_status": "nospace"`) {
		t.Errorf("io_status evidence does not say nospace:\n%s", out.String())
	}
	// The text output, and both outputs as goldens over the checks whose
	// result this scenario fixes.
	out.Reset()
	if code := run(ctx, []string{"doctor", "--qmp", sock, "--interval", "500ms", "--no-check"}, &out, &errb); code != 2 {
		t.Fatalf("text: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !regexp.MustCompile(`(?m)^  vm_io_error +critical +VM is paused on an I/O error$`).MatchString(out.String()) {
		t.Errorf("text output:\n%s", out.String())
	}
	doctorGolden(t, "doctor_paused", stableReport(doc.Reports[0], dir))
}

// stableReport keeps the checks this scenario decides and blanks the
// figures that differ from run to run (free bytes, options of the mount).
func stableReport(r doctor.Report, dir string) doctor.Report {
	keep := map[string]bool{"vm_io_error": true, "io_status": true, "cache_mode": true, "aio": true,
		"throttle": true, "discard": true, "fs_space": true, "filesystem": true, "backing_depth": true, "corrupt_bit": true}
	out := doctor.Report{Target: strings.ReplaceAll(r.Target, dir, "DIR")}
	for _, f := range r.Findings {
		if !keep[f.Check] {
			continue
		}
		if f.Check == "fs_space" || f.Check == "filesystem" {
			f.Summary = "(host-dependent)"
			for k := range f.Evidence {
				f.Evidence[k] = "N"
			}
		}
		out.Findings = append(out.Findings, f)
	}
	return out
}

func doctorGolden(t *testing.T, name string, r doctor.Report) {
	t.Helper()
	var txt, js bytes.Buffer
	if err := doctor.WriteText(&txt, []doctor.Report{r}); err != nil {
		t.Fatal(err)
	}
	if err := doctor.WriteJSON(&js, []doctor.Report{r}); err != nil {
		t.Fatal(err)
	}
	for ext, got := range map[string][]byte{".txt": txt.Bytes(), ".json": js.Bytes()} {
		path := filepath.Join("testdata", name+ext+".golden")
		if *updateGolden {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(want, got) {
			t.Errorf("%s differs (go test ./cmd/qtune -run %s -update); got:\n%s", path, t.Name(), got)
		}
	}
}

// A libvirt domain with cache='writethrough' whose guest writes 100/s
// under a 25 IOPS throttle (far enough below for a guest slowed by a
// busy host to stay pinned at it): the doctor, through libvirt's API only,
// finds both (warn: exit 1) and sees the domain and disk healthy.
func TestDoctorThroughLibvirt(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// On tmpfs, before the daemon starts (its mount namespace copies the
	// host's mounts then): a flush there costs nothing, so the guest
	// keeps its rate on a busy host and the findings depend on the
	// settings, not on the host's disk.
	dir := lab.TmpfsT(t, "256m")
	d := lab.StartLibvirtdT(t)
	img := filepath.Join(dir, "wt.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Loops, w.Span = 0, 16<<20
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: 100, Duration: time.Hour}}
	dom := d.DefineDomainT(t, lab.DomainSpec{Name: "wt", Workload: &w,
		Disks: []lab.DomainDisk{{Target: "vda", Image: img, Cache: "writethrough"}}})
	if err := dom.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Virsh(ctx, "blkdeviotune", "wt", "vda", "--write-iops-sec", "25", "--live"); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(ctx, []string{"doctor", "--libvirt", "--socket", d.SocketPath(), "--domain", "wt", "--json", "--interval", "2s"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (warn)\n%s%s", code, out.String(), errb.String())
	}
	var doc struct {
		Reports []doctor.Report `json:"reports"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Reports) != 1 {
		t.Fatalf("%v: %s", err, out.String())
	}
	r := doc.Reports[0]
	if !strings.HasPrefix(r.Target, "wt/vda ("+img+")") {
		t.Errorf("target %q", r.Target)
	}
	sev := map[string]doctor.Finding{}
	for _, f := range r.Findings {
		sev[f.Check] = f
	}
	for check, want := range map[string]doctor.Severity{"vm_io_error": doctor.OK, "io_status": doctor.OK,
		"cache_mode": doctor.Warn, "throttle": doctor.Warn, "discard": doctor.Info} {
		if f, ok := sev[check]; !ok || f.Severity != want {
			t.Errorf("%s: %s %q, want %s", check, f.Severity, f.Summary, want)
		}
	}
	if _, ok := sev["failed_ops"]; ok {
		t.Error("failed_ops reported, but libvirt's API does not give those counters")
	}
	if !strings.Contains(sev["cache_mode"].Summary, "writethrough") || !strings.Contains(sev["throttle"].Summary, "iops_wr=25") {
		t.Errorf("cache %q, throttle %q", sev["cache_mode"].Summary, sev["throttle"].Summary)
	}
}

// The same full filesystem under libvirt: libvirt reports the domain
// paused for an I/O error and the disk's error as nospace, through its
// own API (nothing tainted).
func TestDoctorLibvirtDomainPausedOnFullFilesystem(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Mounted before the daemon starts: its private mount namespace
	// copies the host's mounts at that moment.
	dir := lab.TmpfsT(t, "16m")
	d := lab.StartLibvirtdT(t)
	img := filepath.Join(dir, "full.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	w := loadgen.Defaults()
	w.Loops, w.BlockSize = 0, 64<<10
	w.Phases = []loadgen.Phase{{Pattern: loadgen.SeqWrite, Duration: time.Hour}}
	// tmpfs has no O_DIRECT: cache=writeback.
	d.DefineDomainT(t, lab.DomainSpec{Name: "full", Workload: &w, Disks: []lab.DomainDisk{{Target: "vda", Image: img, Cache: "writeback"}}})
	for {
		out, err := d.Virsh(ctx, "domstate", "full", "--reason")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "paused") && strings.Contains(out, "I/O error") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("domain never paused on the full filesystem: %s", out)
		case <-time.After(200 * time.Millisecond):
		}
	}
	var out, errb bytes.Buffer
	code := run(ctx, []string{"doctor", "--libvirt", "--socket", d.SocketPath(), "--json", "--interval", "500ms", "--no-check"}, &out, &errb)
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s%s", code, out.String(), errb.String())
	}
	var doc struct {
		Reports []doctor.Report `json:"reports"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Reports) != 1 {
		t.Fatalf("%v: %s", err, out.String())
	}
	got := map[string]doctor.Finding{}
	for _, f := range doc.Reports[0].Findings {
		got[f.Check] = f
	}
	if f := got["vm_io_error"]; f.Severity != doctor.Critical {
		t.Errorf("vm_io_error: %+v", f)
	}
	if f := got["io_status"]; f.Severity != doctor.Critical || f.Evidence["io_status"] != "nospace" {
		t.Errorf("io_status: %+v", f)
	}
	// The agent sees it too: disk.io_status is "nospace" for its policies.
	a := startAgentWith(t, buildQtune(t), "# no rules\n", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"))
	a.waitFor(t, 20*time.Second, "disk.io_status nospace in the agent's samples", func(api.Status) bool {
		h := a.history(t)
		if len(h) == 0 {
			return false
		}
		last := h[len(h)-1].Points
		return len(last) == 1 && last[0].Disk.IOStatus == "nospace"
	})
}

// --qmp-dir checks every VM whose socket is there; a socket that is not
// QEMU is named on stderr and makes the exit status 3, while the VMs
// that answer are still reported.
func TestDoctorQMPDir(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), "ok.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	// -name differs from the socket's name: the report names the VM by its
	// socket, as the agent does.
	vm := lab.StartVMT(t, lab.VMConfig{Name: "qemu-name", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: img, CacheDirect: true}}})
	dir := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "calm.sock")); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "other.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-not-qemu\r\n"))
			c.Close()
		}
	}()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"doctor", "--qmp-dir", dir, "--interval", "200ms", "--no-check"}, &out, &errb)
	if code != exitUnreadable || !strings.Contains(errb.String(), "other.sock") {
		t.Fatalf("exit %d, want %d naming other.sock\nstdout:\n%s\nstderr:\n%s", code, exitUnreadable, out.String(), errb.String())
	}
	for _, want := range []string{"calm/disk0 (" + img + ")", "vm_io_error", "VM prelaunch", "aio=threads with direct I/O"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
