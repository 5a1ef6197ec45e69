package doctor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/qtune/qtune/internal/hoststat"
)

// FIEMAP on a real file: a hole splits the data into two extents.
func TestExtentsOfSparseFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = 0x5a
	}
	_, err1 := f.WriteAt(buf, 0)
	_, err2 := f.WriteAt(buf, 8<<20)
	if err := f.Close(); err1 != nil || err2 != nil || err != nil {
		t.Fatal(err1, err2, err)
	}
	n, err := Extents(p)
	if err != nil {
		t.Skipf("filesystem without FIEMAP: %v", err)
	}
	if n != 2 {
		t.Fatalf("extents %d, want 2", n)
	}
	if _, err := Extents(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestHostChecks(t *testing.T) {
	base := func() ImageFacts {
		var f ImageFacts
		f.Info.Format, f.Info.ClusterSize = "qcow2", 64<<10
		f.Info.VirtualSize, f.Info.ActualSize = 10<<30, 1<<30
		f.Extents = 4
		f.FS = FileSystem{Mount: "/srv", Type: "ext4", Options: "rw,relatime", Size: 100 << 30, Free: 50 << 30}
		return f
	}
	for _, c := range []struct {
		name  string
		edit  func(*ImageFacts)
		check string
		want  Severity
	}{
		{"fine", func(*ImageFacts) {}, "", OK},
		{"fragmented", func(f *ImageFacts) { f.Extents = 4096 }, "fragmentation", Warn},
		{"some extents", func(f *ImageFacts) { f.Extents = 200 }, "fragmentation", Info},
		{"low space", func(f *ImageFacts) { f.FS.Free = 8 << 30 }, "fs_space", Warn},
		{"nearly full", func(f *ImageFacts) { f.FS.Free = 1 << 30 }, "fs_space", Critical},
		{"overcommit", func(f *ImageFacts) { f.Info.VirtualSize = 80 << 30 }, "fs_space", Warn},
		{"nobarrier", func(f *ImageFacts) { f.FS.Options = "rw,nobarrier" }, "filesystem", Critical},
		{"tmpfs", func(f *ImageFacts) { f.FS.Type = "tmpfs" }, "filesystem", Warn},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			c.edit(&f)
			r := CheckImage(f)
			for _, fd := range r.Findings {
				if fd.Check == c.check && fd.Severity != c.want {
					t.Errorf("%s is %s, want %s: %s", fd.Check, fd.Severity, c.want, fd.Summary)
				}
			}
			if r.Worst() != c.want {
				t.Errorf("worst %s, want %s: %+v", r.Worst(), c.want, r.Findings)
			}
		})
	}
}

func TestSchedulerCheck(t *testing.T) {
	for _, c := range []struct {
		q    hoststat.Queue
		want Severity
	}{
		{hoststat.Queue{Device: "8:0", Scheduler: "mq-deadline"}, OK},
		{hoststat.Queue{Device: "8:0", Scheduler: "bfq"}, Info},
		{hoststat.Queue{Device: "8:0", Scheduler: "bfq", Rotational: true}, OK},
		{hoststat.Queue{Device: "8:0", Scheduler: "none", Rotational: true}, Info},
	} {
		var f ImageFacts
		f.Queue = c.q
		r := CheckImage(f)
		found := false
		for _, fd := range r.Findings {
			if fd.Check == "io_scheduler" {
				found = fd.Severity == c.want
			}
		}
		if !found || r.Worst() != c.want {
			t.Errorf("%+v: %+v, want %s", c.q, r.Findings, c.want)
		}
	}
}

// Thin images overcommit a filesystem together: five images that each fit
// in the free space alone, and do not together, are each warned about.
func TestOvercommitAcrossImages(t *testing.T) {
	facts := make([]ImageFacts, 5)
	for i := range facts {
		f := &facts[i]
		f.Path = "/srv/vm" + string(rune('a'+i)) + ".qcow2"
		f.Info.Format, f.Info.ClusterSize = "qcow2", 64<<10
		f.Info.VirtualSize, f.Info.ActualSize = 20<<30, 2<<30 // may grow by 18 GiB
		f.FS = FileSystem{Mount: "/srv", Type: "ext4", Size: 200 << 30, Free: 50 << 30}
	}
	other := ImageFacts{Path: "/big/x.qcow2", FS: FileSystem{Mount: "/big", Type: "ext4", Size: 200 << 30, Free: 150 << 30}}
	other.Info.Format, other.Info.VirtualSize, other.Info.ActualSize = "qcow2", 20<<30, 1<<30
	if r := CheckImage(facts[0]); r.Worst() != OK {
		t.Fatalf("one image alone fits: %+v", r.Findings)
	}
	all := append(facts, other)
	ShareFilesystems(all)
	for _, f := range all {
		r := CheckImage(f)
		var fs Finding
		for _, fd := range r.Findings {
			if fd.Check == "fs_space" {
				fs = fd
			}
		}
		want := Warn
		if f.FS.Mount == "/big" {
			want = OK
		}
		if fs.Severity != want {
			t.Errorf("%s: fs_space %s (%s), want %s", f.Path, fs.Severity, fs.Summary, want)
		}
		if want == Warn && (fs.Evidence["images_on_fs"] != "5" || fs.Evidence["fs_may_grow_bytes"] != u(5*18<<30)) {
			t.Errorf("%s: evidence %v", f.Path, fs.Evidence)
		}
	}
}

func TestPreallocation(t *testing.T) {
	var f ImageFacts
	f.Info.Format, f.Info.VirtualSize, f.Info.ActualSize = "qcow2", 1<<30, 1<<20
	if p := Preallocation(f); p != "none" {
		t.Errorf("thin: %s", p)
	}
	f.Check = &CheckResult{AllocatedClusters: 16384, TotalClusters: 16384}
	if p := Preallocation(f); p != "metadata" {
		t.Errorf("every cluster mapped, file sparse: %s", p)
	}
	f.Info.ActualSize = 1<<30 + 1<<20
	if p := Preallocation(f); p != "full" {
		t.Errorf("every cluster on disk: %s", p)
	}
}
