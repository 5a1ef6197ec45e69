// Package statetest breaks state stores on purpose, for tests of how
// qtune refuses them.
package statetest

import (
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Corrupt writes a store with a few records to dir and then breaks its
// data pages (not the meta pages, which bbolt checks itself on open), as
// a bad disk or a torn write would. Which pages hold data, and how large
// a page is, bbolt says itself (Tx.Page, DB.Info): nothing here knows
// its on-disk layout beyond a page's place, its id times the page size.
// The pages are zeroed, which bbolt's check reports without reading past
// them.
func Corrupt(t testing.TB, dir string) {
	t.Helper()
	s, err := state.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := s.Append(&state.Record{At: time.Unix(int64(i), 0), Target: state.Target{VM: "a", Disk: "vda"}, Knob: policy.KnobThrottle, Result: state.ResultApplied}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := state.StorePath(dir)
	pages, pageSize := dataPages(t, path)
	if len(pages) == 0 {
		t.Fatal("no data page found to break")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, pageSize)
	for _, id := range pages {
		if _, err := f.WriteAt(zero, int64(id)*int64(pageSize)); err != nil {
			t.Fatal(err)
		}
	}
}

// dataPages lists the branch and leaf pages of the store at path.
func dataPages(t testing.TB, path string) ([]int, int) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []int
	err = db.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p == nil {
				return nil
			}
			if p.Type == "leaf" || p.Type == "branch" {
				ids = append(ids, id)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, db.Info().PageSize
}
