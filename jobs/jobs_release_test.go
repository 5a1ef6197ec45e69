package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

func TestReleasedPaths(t *testing.T) {
	for _, tc := range []struct {
		j    state.Job
		want string
	}{
		{state.Job{Kind: policy.KnobMirror, Source: "/a/src.qcow2", Dest: "/b/src.qcow2", Pivoted: true}, "/a/src.qcow2"},
		{state.Job{Kind: policy.KnobConvert, Source: "/a/src.qcow2", Dest: "/a/src-1.qcow2"}, ""}, // no pivot: still in use
		{state.Job{Kind: policy.KnobStream, Source: "/a/top", Chain: []string{"/a/mid", "/a/base"}}, "/a/mid /a/base"},
		{state.Job{Kind: policy.KnobStream, Source: "/a/top", Chain: []string{"/a/mid", "/a/base"}, Base: "/a/base"}, "/a/mid"},
	} {
		if got := strings.Join(releasedPaths(&tc.j), " "); got != tc.want {
			t.Errorf("%s %+v: released %q, want %q", tc.j.Kind, tc.j, got, tc.want)
		}
	}
}

// Open or not is read from the process's file descriptors: this test's
// own process holds the image, then lets it go.
func TestKeptImagesSeeWhatIsOpen(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.qcow2")
	if err := os.WriteFile(src, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	j := &state.Job{Kind: policy.KnobMirror, Source: src, Dest: src + ".new", Pivoted: true}
	k := keptImages(j, os.Getpid())
	if len(k) != 1 || !k[0].Open || k[0].Bytes == 0 {
		t.Fatalf("held open: %+v", k)
	}
	if note := keptNote(&state.Job{Kept: k}); !strings.Contains(note, "still open in QEMU") {
		t.Fatalf("note %q", note)
	}
	f.Close()
	if k = keptImages(j, os.Getpid()); len(k) != 1 || k[0].Open {
		t.Fatalf("closed: %+v", k)
	}
	if note := keptNote(&state.Job{Kept: k}); !strings.Contains(note, "no longer open: free to delete") {
		t.Fatalf("note %q", note)
	}
	if k = keptImages(j, 0); len(k) != 1 || !k[0].Open {
		t.Fatalf("with no pid known it must not claim free: %+v", k)
	}
}
