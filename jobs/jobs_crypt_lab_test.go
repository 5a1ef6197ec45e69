package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Disks QEMU names json:{...}: a LUKS qcow2 (its encrypt.key-secret does
// not fit in a file name) and a raw node with an offset, copied under
// guest writes through the manager and the QMP driver.

const labKey = "qtune-lab-key-0"

// labSecret is the secret object the LUKS lab disks are opened with.
var labSecret = []string{"-object", "secret,id=sec0,data=" + labKey}

// imgSecret is the same for qemu-img.
var imgSecret = []string{"--object", "secret,id=sec0,data=" + labKey}

func luksImage(t *testing.T, path string) {
	t.Helper()
	qemuImgOut(t, append([]string{"create", "-q", "-f", "qcow2"}, append(imgSecret,
		"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", path, "64M")...)...)
}

// luksOpts reads an encrypted qcow2 through the lab key with qemu-img.
func luksOpts(path string) []string {
	return append(append([]string{}, imgSecret...), "--image-opts", "driver=qcow2,encrypt.key-secret=sec0,file.filename="+path)
}

// startDiskVM boots a stamping guest on one disk d.
func startDiskVM(t *testing.T, name string, d lab.Disk, extra []string, phases ...loadgen.Phase) *lab.VM {
	t.Helper()
	vm := lab.StartVMT(t, lab.VMConfig{Name: name, Workload: lab.Stamper(phases...), Disks: []lab.Disk{d}, Extra: extra})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a TCG boot on a loaded host
	defer cancel()
	if err := vm.WaitSerial(ctx, "qtune-load ready"); err != nil {
		t.Fatal(err)
	}
	return vm
}

// verifyEvery is a guest that writes stamps for write, then reads them
// all back every period, n times. A test waits for the first read-back
// that began after its copy pivoted, however long the copy took to get
// there: a fixed idle long enough for the slowest host made every run
// as slow as that.
func verifyEvery(write, period time.Duration, n int) []loadgen.Phase {
	ph := []loadgen.Phase{{Pattern: loadgen.StampWrite, Rate: 300, Duration: write}}
	for i := 0; i < n; i++ {
		ph = append(ph, loadgen.Phase{Pattern: loadgen.Idle, Duration: period}, loadgen.Phase{Pattern: loadgen.Verify, Duration: time.Second})
	}
	return ph
}

// copyPhases read back every 5 s for a minute; luksPhases every 10 s for
// three minutes: an encrypted copy's start makes and opens a LUKS key
// slot, which holds QEMU's main loop (and the guest's I/O) for seconds,
// far more on a loaded host.
var (
	copyPhases = verifyEvery(4*time.Second, 5*time.Second, 12)
	luksPhases = verifyEvery(4*time.Second, 10*time.Second, 18)
)

// verifiedAfter waits until serial (read by read) holds two read-backs
// more than it did when the copy pivoted (the first may have begun before
// it), and checks every one of them.
func verifiedAfter(t *testing.T, read func() string, atPivot int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for strings.Count(read(), "qtune-verify") < atPivot+2 {
		if time.Now().After(deadline) {
			t.Fatalf("no read-back by the guest within %v of the pivot:\n%s", limit, read())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := read(); strings.Contains(s, "qtune-verify FAILED") || !regexp.MustCompile(`qtune-verify ok worker=\d+ checked=[1-9]`).MatchString(s) {
		t.Fatalf("the guest's data does not verify:\n%s", s)
	}
}

// copyJSONDisk runs a copy of a disk QEMU names json:{...} while the
// guest writes, pivots when it is quiet, and checks the guest reads its
// data back through the new image.
func copyJSONDisk(t *testing.T, vm *lab.VM, dir string, req Request) *state.Job {
	t.Helper()
	ctx := context.Background()
	var quiet atomic.Bool
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{dir}, PivotGate: func(*state.Job) bool { return quiet.Load() }})
	in, err := insertedOf(ctx, l.block, req.Target)
	if err != nil || !strings.HasPrefix(in.File, "json:") {
		t.Fatalf("the lab disk is not named json:{...}: %v %v", in, err)
	}
	p, err := l.m.Plan(ctx, req, "hand", false)
	if err != nil || p.Result != state.ResultApplied {
		t.Fatalf("plan: %s %s %v", p.Result, p.Reason, err)
	}
	// An encrypted copy's start makes and opens a LUKS key slot: seconds
	// of PBKDF2 on an idle host, far more on a loaded one.
	if j := l.waitState(t, p.Job.ID, state.JobReady, 4*time.Minute); j.State != state.JobReady {
		t.Fatalf("copy ended %s before ready: %s", j.State, j.Error)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := vm.WaitSerial(wctx, "phase=1"); err != nil {
		t.Fatal(err)
	}
	quiet.Store(true)
	j := l.waitState(t, p.Job.ID, state.JobDone, time.Minute)
	if j.State != state.JobDone || !j.Pivoted {
		t.Fatalf("copy ended %s: %s", j.State, j.Error)
	}
	// Read back through the new image.
	verifiedAfter(t, vm.Serial, strings.Count(vm.Serial(), "qtune-verify"), time.Minute)
	vm.Stop()
	return j
}

// A raw node with an offset: QEMU names it json:{"offset": ...}; it is
// planned, owned, budgeted and mirrored like any other disk.
func TestRealJobMirrorJSONFilename(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	dir, fast := t.TempDir(), t.TempDir()
	src := filepath.Join(dir, "offset.raw")
	qemuImgOut(t, "create", "-q", "-f", "raw", src, "64M")
	vm := startDiskVM(t, "jsonraw", lab.Disk{ID: "disk0", Image: src, Format: "raw", CacheDirect: true,
		FormatOpts: map[string]any{"offset": 1 << 20, "size": 32 << 20}}, nil, copyPhases...)
	j := copyJSONDisk(t, vm, fast, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "jsonraw", Disk: "disk0"}, TargetDir: fast, Speed: 4 << 20})
	if j.Source != src || j.Dest != filepath.Join(fast, "offset.raw") {
		t.Fatalf("job copies %s to %s", j.Source, j.Dest)
	}
	checkStamps(t, j.Dest)
}

// A LUKS qcow2 disk: named json:{"encrypt.key-secret": ...}; a copy of it
// is never written in the clear.
func TestRealJobMirrorLUKS(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	dir, fast := t.TempDir(), t.TempDir()
	src := filepath.Join(dir, "enc.qcow2")
	luksImage(t, src)
	vm := startDiskVM(t, "luks", lab.Disk{ID: "disk0", Image: src, CacheDirect: true,
		FormatOpts: map[string]any{"encrypt": map[string]any{"format": "luks", "key-secret": "sec0"}}}, labSecret, luksPhases...)
	j := copyJSONDisk(t, vm, fast, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "luks", Disk: "disk0"}, TargetDir: fast})
	checkEncryptedCopy(t, j)
}

// checkEncryptedCopy: the copy's header says LUKS, its data reads back
// through the key, and no stamp of the guest's is in the file in the
// clear.
func checkEncryptedCopy(t *testing.T, j *state.Job) {
	t.Helper()
	var info struct {
		Encrypted      bool `json:"encrypted"`
		FormatSpecific struct {
			Data struct {
				Encrypt struct {
					Format string `json:"format"`
				} `json:"encrypt"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal([]byte(qemuImgOut(t, "info", "-U", "--output=json", j.Dest)), &info); err != nil {
		t.Fatal(err)
	}
	if !info.Encrypted || info.FormatSpecific.Data.Encrypt.Format != "luks" {
		t.Fatalf("the copy %s is not LUKS-encrypted: %+v", j.Dest, info)
	}
	n, err := lab.CheckStampsOf(context.Background(), lab.StampSpan, luksOpts(j.Dest)...)
	if err != nil || n == 0 {
		t.Fatalf("stamps in %s read through the key: %d blocks, %v", j.Dest, n, err)
	}
	// The whole disk, written or not, reads the same through both keys'
	// images (the VM is stopped).
	qemuImgOut(t, append(append([]string{"compare"}, imgSecret...), "--image-opts",
		"driver=qcow2,encrypt.key-secret=sec0,file.filename="+j.Source, "driver=qcow2,encrypt.key-secret=sec0,file.filename="+j.Dest)...)
	raw, err := os.ReadFile(j.Dest)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("QTSTAMP1")) {
		t.Fatalf("%s holds the guest's data in the clear", j.Dest)
	}
	t.Logf("%s: LUKS, %d of the guest's blocks read back through the key", j.Dest, n)
}

// A convert of a LUKS qcow2 (to 128 KiB clusters, beside it): the same.
func TestRealJobConvertLUKS(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "enc.qcow2")
	luksImage(t, src)
	vm := startDiskVM(t, "luksconv", lab.Disk{ID: "disk0", Image: src, CacheDirect: true,
		FormatOpts: map[string]any{"encrypt": map[string]any{"format": "luks", "key-secret": "sec0"}}}, labSecret, luksPhases...)
	j := copyJSONDisk(t, vm, dir, Request{Kind: policy.KnobConvert, Target: state.Target{VM: "luksconv", Disk: "disk0"},
		Layout: policy.Layout{ClusterSize: 128 << 10}})
	checkEncryptedCopy(t, j)
	if out := qemuImgOut(t, "info", "-U", j.Dest); !strings.Contains(out, "cluster_size: 131072") {
		t.Fatalf("the converted copy:\n%s", out)
	}
}

// A raw LUKS disk (the luks driver over a file): qtune cannot make its
// copy encrypted, so the mirror is refused with its reason and nothing
// is written.
func TestRealJobMirrorRawLUKSRefused(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	ctx := context.Background()
	dir, fast := t.TempDir(), t.TempDir()
	src := filepath.Join(dir, "enc.luks")
	qemuImgOut(t, append([]string{"create", "-q", "-f", "luks"}, append(imgSecret, "-o", "key-secret=sec0,iter-time=10", src, "64M")...)...)
	vm := lab.StartVMT(t, lab.VMConfig{Name: "rawluks", Paused: true, Extra: labSecret,
		Disks: []lab.Disk{{ID: "disk0", Image: src, Format: "luks", FormatOpts: map[string]any{"key-secret": "sec0"}}}})
	l := startLabJobs(t, vm, Options{MirrorDirs: []string{fast}})
	p, err := l.m.Plan(ctx, Request{Kind: policy.KnobMirror, Target: state.Target{VM: "rawluks", Disk: "disk0"}, TargetDir: fast}, "hand", false)
	if err == nil || p.Result != state.ResultRefused || !strings.Contains(err.Error(), "never writes the guest's data in the clear") ||
		!strings.Contains(err.Error(), "LUKS inside qcow2 only") {
		t.Fatalf("plan: %s %q %v", p.Result, p.Reason, err)
	}
	if ents, _ := os.ReadDir(fast); len(ents) != 0 {
		t.Fatalf("a refused copy wrote %v", ents)
	}
	t.Logf("refused: %v", err)
}
