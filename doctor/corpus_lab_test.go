package doctor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
)

// The corpus: damaged and foreign images built from a good one made by
// qemu-img (no image is committed), each with the finding it must raise.
// The good image is 64 MiB with 1 MiB of data at 0 and 128 KiB at
// 32 MiB; its header is QEMU 7.2's v3 layout (header_length 112, L1
// table at 0x30000, refcount table at 0x10000).
type corpusCase struct {
	name  string
	make  func(t *testing.T, dir, good string) string
	check string   // the finding that must carry the damage
	want  Severity // the report's worst and that finding's severity
}

func be32b(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64b(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// patched copies good and writes b at off of the copy.
func patched(off int64, b []byte) func(t *testing.T, dir, good string) string {
	return func(t *testing.T, dir, good string) string {
		p := copyImage(t, dir, good)
		patch(t, p, off, b)
		return p
	}
}

func copyImage(t *testing.T, dir, good string) string {
	t.Helper()
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, strings.ReplaceAll(t.Name()[strings.LastIndex(t.Name(), "/")+1:], "/", "_")+".qcow2")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func cut(n int64) func(t *testing.T, dir, good string) string {
	return func(t *testing.T, dir, good string) string {
		p := copyImage(t, dir, good)
		if err := os.Truncate(p, n); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

var corpus = []corpusCase{
	{"good", func(t *testing.T, dir, good string) string { return copyImage(t, dir, good) }, "", OK},
	{"magic", patched(0, []byte("XXXX")), "qcow2_header", Critical},
	{"version-4", patched(4, be32b(4)), "qcow2_header", Critical},
	{"version-1", patched(4, be32b(1)), "qcow2_header", Critical},
	{"backing-offset-past-cluster", patched(8, be64b(1<<20)), "qcow2_header", Critical},
	{"cluster-bits-30", patched(20, be32b(30)), "qcow2_cluster_bits", Critical},
	{"size-2p62", patched(24, be64b(1<<62)), "qcow2_size", Critical},
	{"crypt-method-7", patched(32, be32b(7)), "qcow2_header", Critical},
	{"l1-size-0", patched(36, be32b(0)), "qcow2_l1_table", Critical},
	{"l1-offset-overwritten", patched(40, []byte("AAAAAAAA")), "qcow2_l1_table", Critical},
	{"l1-offset-into-header", patched(40, be64b(0x200)), "qcow2_l1_table", Critical},
	{"l1-offset-past-eof", patched(40, be64b(1<<40)), "qcow2_l1_table", Critical},
	{"refcount-offset-unaligned", patched(48, be64b(0x10200)), "qcow2_refcount_table", Critical},
	{"refcount-overlaps-l1", patched(48, be64b(0x30000)), "qcow2_refcount_table", Critical},
	{"refcount-clusters-0", patched(56, be32b(0)), "qcow2_refcount_table", Critical},
	{"nb-snapshots-70000", patched(60, be32b(70000)), "qcow2_snapshot_table", Critical},
	{"snapshot-table-past-eof", func(t *testing.T, dir, good string) string {
		p := patched(60, be32b(1))(t, dir, good)
		patch(t, p, 64, be64b(64<<20))
		return p
	}, "qcow2_snapshot_table", Critical},
	{"unknown-incompatible-bit", patched(72, be64b(1<<40)), "qcow2_features", Critical},
	{"refcount-order-9", patched(96, be32b(9)), "qcow2_header", Critical},
	{"header-length-50", patched(100, be32b(50)), "qcow2_header", Critical},
	{"compression-type-5", patched(104, []byte{5}), "qcow2_features", Critical},
	{"extension-too-large", patched(116, be32b(1<<16)), "qcow2_extensions", Critical},
	{"l1-entry-into-header", patched(0x30000, be64b(1<<63|0x200)), "qcow2_l1_entries", Critical},
	{"cut-100-bytes", cut(100), "qcow2_header", Critical},
	{"magic-and-version-only", cut(8), "qcow2_header", Critical},
	{"truncated-in-l2", func(t *testing.T, dir, good string) string {
		// Three L2 tables, each followed by its data: cut inside the last.
		p := filepath.Join(dir, "truncated-in-l2.qcow2")
		qimg(t, "create", "-q", "-f", "qcow2", p, "2G")
		for _, at := range []string{"0", "700M", "1400M"} {
			qio(t, p, "write -P 0x5a "+at+" 64k")
		}
		if err := os.Truncate(p, int64(be64(t, p, 0x30000+16)&tableOffsetMask)+4096); err != nil {
			t.Fatal(err)
		}
		return p
	}, "qcow2_l1_entries", Critical},
	{"vmdk", func(t *testing.T, dir, _ string) string {
		p := filepath.Join(dir, "disk.vmdk")
		qimg(t, "create", "-q", "-f", "vmdk", p, "64M")
		return p
	}, "format", OK},
	{"random-1MiB", func(t *testing.T, dir, _ string) string {
		b := make([]byte, 1<<20)
		rand.New(rand.NewSource(25)).Read(b)
		p := filepath.Join(dir, "random.bin")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}, "format", Info},
	{"raw", func(t *testing.T, dir, _ string) string {
		p := filepath.Join(dir, "disk.raw")
		qimg(t, "create", "-q", "-f", "raw", p, "64M")
		return p
	}, "format", Info},
}

func sum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// The doctor reads every image of the corpus without writing to it,
// names the broken field with its severity, never calls a broken image
// ok, and says for every format what ran; the reports are golden.
func TestCorpus(t *testing.T) {
	lab.NeedQEMU(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.src")
	qimg(t, "create", "-q", "-f", "qcow2", good, "64M")
	qio(t, good, "write -P 0x5a 0 1M")
	qio(t, good, "write -P 0x33 32M 128k")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var reports []Report
	for _, c := range corpus {
		t.Run(c.name, func(t *testing.T) {
			img := c.make(t, dir, good)
			before := sum(t, img)
			f, err := QemuImg{}.Gather(ctx, img, 32<<20, false)
			if err != nil {
				t.Fatalf("an image that reads is never unreadable (exit 3): %v", err)
			}
			f.QueueErr = errLeftOut
			r := CheckImage(f)
			if sum(t, img) != before {
				t.Fatal("the image changed: the doctor wrote to it")
			}
			r.Target = strings.TrimPrefix(r.Target, dir+"/")
			assertCorpus(t, r, c)
			reports = append(reports, hostIndependent(r))
		})
	}
	golden(t, "corpus", reports, dir)
}

func assertCorpus(t *testing.T, r Report, c corpusCase) {
	t.Helper()
	if r.Worst() != c.want {
		t.Errorf("worst %s, want %s", r.Worst(), c.want)
	}
	found := c.check == ""
	for _, f := range r.Findings {
		if f.Check == c.check {
			found = true
			if f.Severity != c.want {
				t.Errorf("%s is %s, want %s: %s", f.Check, f.Severity, c.want, f.Summary)
			}
		}
	}
	if !found {
		t.Errorf("no %s finding in %+v", c.check, r.Findings)
	}
	if len(r.NotRun) == 0 {
		t.Error("no check is listed as not run: some always are for one format or another")
	}
}

// What qcow2_salvage prints saves the data: the dd commands rebuild the
// guest disk byte for byte, and the header patch makes a copy qemu-img
// opens. Both run in a scratch directory and read the image only.
func TestSalvageCommandsRecoverTheDisk(t *testing.T) {
	lab.NeedQEMU(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.src")
	qimg(t, "create", "-q", "-f", "qcow2", good, "64M")
	qio(t, good, "write -P 0x5a 0 1M")
	qio(t, good, "write -P 0x33 32M 128k")
	want := filepath.Join(dir, "want.raw")
	qimg(t, "convert", "-O", "raw", good, want)
	img := patched(40, []byte("AAAAAAAA"))(t, dir, good)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := QemuImg{}.Gather(ctx, img, 32<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, fd := range CheckImage(f).Findings {
		if fd.Check == "qcow2_salvage" {
			cmds = fd.Salvage
		}
	}
	if len(cmds) == 0 {
		t.Fatal("no salvage commands")
	}
	work := t.TempDir()
	sh := exec.Command("sh", "-e", "-c", strings.Join(cmds, "\n"))
	sh.Dir = work
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("salvage commands: %v\n%s\n%s", err, strings.Join(cmds, "\n"), out)
	}
	got, err := os.ReadFile(filepath.Join(work, "RESCUE.raw"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, w) {
		t.Fatal("RESCUE.raw differs from the guest disk")
	}
	qimg(t, "convert", "-O", "raw", filepath.Join(work, "COPY.qcow2"), filepath.Join(work, "copy.raw"))
	if c, _ := os.ReadFile(filepath.Join(work, "copy.raw")); !bytes.Equal(c, w) {
		t.Fatal("the patched copy does not read as the guest disk")
	}
}
