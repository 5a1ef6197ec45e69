// Package storetest breaks state stores on purpose, for tests of how
// qtune refuses them.
package storetest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/tuning"
)

// Corrupt writes a store with a few records to dir and then breaks
// one of its data pages (not the meta pages, which bbolt checks itself
// on open), as a bad disk or a torn write would.
func Corrupt(t testing.TB, dir string) {
	t.Helper()
	s, err := tuning.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := s.Append(&tuning.Record{At: time.Unix(int64(i), 0), Target: tuning.Target{VM: "a", Disk: "vda"}, Knob: policy.KnobThrottle, Result: tuning.ResultApplied}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := filepath.Join(dir, "state.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	broken := 0
	// Data pages: leaf (0x02) and branch (0x01) pages past the two metas
	// and the freelist. Their id field no longer matches where they sit.
	for off := 3 * pageSize; off+pageSize <= len(b); off += pageSize {
		flags := binary.LittleEndian.Uint16(b[off+8:])
		if flags == 0x01 || flags == 0x02 {
			binary.LittleEndian.PutUint64(b[off:], 0xdeadbeef)
			broken++
		}
	}
	if broken == 0 {
		t.Fatal("no data page found to break")
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
