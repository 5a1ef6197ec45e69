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
