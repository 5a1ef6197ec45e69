package doctor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// errLeftOut stands for a host fact a test leaves out of its report.
var errLeftOut = errors.New("left out")

func qimg(t *testing.T, args ...string) {
	t.Helper()
	if _, err := lab.QemuImg(context.Background(), args...); err != nil {
		t.Fatal(err)
	}
}

func qio(t *testing.T, img, cmd string) {
	t.Helper()
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", cmd, img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %s: %v %s", cmd, err, out)
	}
}

// patch overwrites bytes of a file in place.
func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func be64(t *testing.T, path string, off int64) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint64(b[:])
}

// firstRefblock is the file offset of the image's first refcount block
// (header: refcount_table_offset at byte 48).
func firstRefblock(t *testing.T, img string) uint64 {
	return be64(t, img, int64(be64(t, img, 48)))
}

// Each case is crafted to trigger one finding (or, clean, none).
var imageCases = []struct {
	name  string
	make  func(t *testing.T, dir string) string
	check string   // the finding it must raise
	want  Severity // and its severity
}{
	{"clean", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "clean.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", p, "64M")
		qio(t, p, "write -P 0x5a 0 1M")
		return p
	}, "", OK},
	{"corrupt-bit", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "corrupt.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", p, "64M")
		patch(t, p, 72, binary.BigEndian.AppendUint64(nil, 1<<1)) // incompatible_features: corrupt
		return p
	}, "corrupt_bit", Critical},
	{"damaged-refcounts", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "refcount.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", p, "64M")
		qio(t, p, "write -P 0x5a 0 1M")
		patch(t, p, int64(firstRefblock(t, p)), make([]byte, 64)) // refcounts of the first 32 clusters: 0
		return p
	}, "check_corruptions", Critical},
	{"leaked-clusters", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "leak.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", p, "64M")
		qio(t, p, "write -P 0x5a 0 1M")
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// Two clusters past the end get a refcount of 1 and nobody points at them.
		n := st.Size() / 65536
		patch(t, p, int64(firstRefblock(t, p))+2*n, []byte{0, 1, 0, 1})
		if err := os.Truncate(p, (n+2)*65536); err != nil {
			t.Fatal(err)
		}
		return p
	}, "check_leaks", Warn},
	{"dirty", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "dirty.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", p, "64M")
		patch(t, p, 72, binary.BigEndian.AppendUint64(nil, 1)) // incompatible_features: dirty
		return p
	}, "dirty_bit", Warn},
	{"chain-4", func(t *testing.T, dir string) string {
		prev := ""
		for i := 0; i < 5; i++ {
			p := filepath.Join(dir, "chain"+strconv.Itoa(i)+".qcow2")
			args := []string{"create", "-q", "-f", "qcow2"}
			if prev != "" {
				args = append(args, "-F", "qcow2", "-b", filepath.Base(prev))
			}
			qimg(t, append(args, p, "64M")...)
			prev = p
		}
		return prev
	}, "backing_depth", Warn},
	{"missing-backing", func(t *testing.T, dir string) string {
		base, top := filepath.Join(dir, "gone.qcow2"), filepath.Join(dir, "orphan.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", base, "64M")
		qimg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "gone.qcow2", top)
		if err := os.Remove(base); err != nil {
			t.Fatal(err)
		}
		return top
	}, "backing_missing", Critical},
	{"snapshots-10", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "snaps.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", p, "64M")
		for i := 0; i < 10; i++ {
			qimg(t, "snapshot", "-c", "s"+strconv.Itoa(i), p)
		}
		return p
	}, "internal_snapshots", Warn},
	{"compressed", func(t *testing.T, dir string) string {
		src, p := filepath.Join(dir, "plain.qcow2"), filepath.Join(dir, "compressed.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", src, "64M")
		qio(t, src, "write -P 0x5a 0 2M")
		qimg(t, "convert", "-c", "-O", "qcow2", src, p)
		return p
	}, "compressed_clusters", Info},
	{"luks", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "luks.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", "--object", "secret,id=s,data=k", "-o", "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10", p, "64M")
		return p
	}, "encryption", Info},
	{"old-aes", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "aes.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", "--object", "secret,id=s,data=k", "-o", "encrypt.format=aes,encrypt.key-secret=s", p, "64M")
		return p
	}, "encryption", Critical},
	{"compressed-zstd", func(t *testing.T, dir string) string {
		src, p := filepath.Join(dir, "plain-z.qcow2"), filepath.Join(dir, "zstd.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", src, "64M")
		qio(t, src, "write -P 0x5a 0 2M")
		qimg(t, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", src, p)
		return p
	}, "compressed_clusters", Info},
	{"small-clusters-uncovered", func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "4k.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", p, "32G")
		return p
	}, "l2_coverage", Warn},
}

func TestImagesAgainstQemuImg(t *testing.T) {
	lab.NeedQEMU(t)
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Fatal("qemu-io (qemu-utils) is needed to write into the crafted images")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var reports []Report
	for _, c := range imageCases {
		t.Run(c.name, func(t *testing.T) {
			img := c.make(t, dir)
			f, err := QemuImg{}.Gather(ctx, img, 32<<20, false)
			if err != nil {
				t.Fatal(err)
			}
			// The scheduler of this machine's disk is no property of the
			// crafted image (bfq on an SSD would be info here): the
			// loop-device test and the unit tests cover that check.
			f.QueueErr = errLeftOut
			if f.HostAES != nil { // the host's CPU is no property of the image either
				yes := true
				f.HostAES = &yes
			}
			r := CheckImage(f)
			r.Target = strings.TrimPrefix(r.Target, dir+"/")
			assertOnly(t, r, c.check, c.want)
			reports = append(reports, hostIndependent(r))
		})
	}
	golden(t, "images", reports, dir)
}

// assertOnly checks that the crafted problem is found with its severity
// and that nothing else is worse than info (one cause, one finding).
func assertOnly(t *testing.T, r Report, check string, want Severity) {
	t.Helper()
	for _, f := range r.Findings {
		switch {
		case f.Check == check && f.Severity != want:
			t.Errorf("%s: %s is %s, want %s (%s)", r.Target, check, f.Severity, want, f.Summary)
		case f.Check != check && f.Severity > Info:
			t.Errorf("%s: unexpected %s %s: %s", r.Target, f.Check, f.Severity, f.Summary)
		}
	}
	if check == "" && r.Worst() > OK {
		t.Errorf("clean image: worst %s", r.Worst())
	}
	if check != "" && r.Worst() != want {
		t.Errorf("%s: worst %s, want %s", r.Target, r.Worst(), want)
	}
}

func golden(t *testing.T, name string, rs []Report, dir string) {
	t.Helper()
	var txt, js bytes.Buffer
	if err := WriteText(&txt, rs); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, rs); err != nil {
		t.Fatal(err)
	}
	for ext, b := range map[string][]byte{".txt": txt.Bytes(), ".json": js.Bytes()} {
		got := bytes.ReplaceAll(b, []byte(dir), []byte("DIR"))
		path := filepath.Join("testdata", name+ext+".golden")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(want, got) {
			t.Errorf("%s differs (go test ./doctor -run %s -update); got:\n%s", path, t.Name(), got)
		}
	}
}

// hostIndependent blanks the figures of the host checks (free space,
// extents, mount options differ from machine to machine) so the golden
// files hold only what the image decides; the severity stays.
func hostIndependent(r Report) Report {
	out := r
	out.Findings = append([]Finding(nil), r.Findings...)
	for i, f := range out.Findings {
		if f.Check == "fragmentation" || f.Check == "fs_space" || f.Check == "filesystem" || f.Check == "io_scheduler" {
			out.Findings[i].Summary = "(host-dependent)"
			ev := map[string]string{}
			for k := range f.Evidence {
				ev[k] = "N"
			}
			if len(ev) == 0 {
				ev = nil
			}
			out.Findings[i].Evidence = ev
		}
	}
	return out
}
