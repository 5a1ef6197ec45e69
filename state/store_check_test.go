package state_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/state/statetest"
)

// A store with a corrupted page is refused with an error naming the file,
// and the file is left exactly as it was.
func TestOpenStoreRefusesCorruptPage(t *testing.T) {
	dir := t.TempDir()
	statetest.Corrupt(t, dir)
	before, _ := os.ReadFile(filepath.Join(dir, "state.db"))
	_, err := state.OpenStore(dir)
	if !errors.Is(err, state.ErrStoreCorrupt) {
		t.Fatalf("open corrupt store: %v", err)
	}
	if want := filepath.Join(dir, "state.db"); !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error does not name %s: %v", want, err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "state.db"))
	if !bytes.Equal(before, after) {
		t.Error("the corrupt store was changed")
	}
	t.Log(err)
}
