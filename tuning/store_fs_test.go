package tuning

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// A full state directory: the intent cannot be written, so the knob is
// never touched and the outcome says why.
func TestFullStateDirChangesNothing(t *testing.T) {
	dir := lab.TmpfsT(t, "64k")
	s, err := state.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()
	// bbolt commits into pages it already has; owned records use them up
	// until the file must grow and cannot.
	var putErr error
	for i := 0; i < 100000 && putErr == nil; i++ {
		putErr = s.PutOwned(&state.Owned{Target: state.Target{VM: fmt.Sprintf("filler-%06d", i), Disk: "vda"}, Knob: policy.KnobThrottle,
			Phase: state.PhaseApplied, Rule: "filling the store until the file system is full"})
	}
	if !errors.Is(putErr, syscall.ENOSPC) {
		t.Fatalf("the store never ran out of space: %v", putErr)
	}
	b := &fakeBackend{state: map[string]state.KnobState{}}
	e := NewExecutor(b, s, Options{Clock: clock.NewFake(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC))})
	out, err := e.Execute(context.Background(), throttle(300))
	if err == nil || out.Result != state.ResultFailed || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("execute on a full state dir: %+v %v", out, err)
	}
	if b.applies != 0 {
		t.Fatalf("the knob was changed %d time(s) with no intent written", b.applies)
	}
	t.Logf("refused: %v", err)
}

// A read-only state directory: the store cannot be opened, with an error
// that names it.
func TestReadOnlyStateDirRefused(t *testing.T) {
	dir := lab.TmpfsT(t, "1m")
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, out)
	}
	_, err := state.OpenStore(dir)
	if err == nil || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("open on a read-only dir: %v", err)
	}
	t.Logf("refused: %v", err)
}
