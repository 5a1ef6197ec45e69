package facts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/qmpfake"
)

// A QEMU too old to read is refused with the same words for the agent,
// qtune stats and qtune doctor.
func TestSourceRefusesOldQEMU(t *testing.T) {
	old := qmpfake.New(t)
	old.SetVersion(2, 11, 0)
	dir := t.TempDir()
	if err := os.Symlink(old.Path, filepath.Join(dir, "old.sock")); err != nil {
		t.Fatal(err)
	}
	s := newQMPSource(Options{QMPDir: dir, CallTimeout: time.Second}, hclog.NewNullLogger())
	defer s.stopAll()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errs, _ := s.sample(context.Background())
		if err := errs["old"]; err != nil && strings.Contains(err.Error(), "too old") {
			if !strings.Contains(err.Error(), "QEMU 2.11.0") || !strings.Contains(err.Error(), "3.0 or newer") {
				t.Errorf("error: %v", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no too-old error; last errors %v", errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
