package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StorePath is where the state store of a state directory lives.
func StorePath(dir string) string { return filepath.Join(dir, "state.db") }

// openReadOnly opens a store file for inspection, never creating or
// changing it. A running agent holds it exclusively: that is ErrStoreLocked.
func openReadOnly(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("state store %s: %w", path, ErrStoreLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("state store %s: %w", path, err)
	}
	return db, nil
}

// CheckStoreFile inspects the store at path without changing it: bbolt's
// consistency check, then every owned record and log line must decode.
// It returns what is wrong; err is for a store that cannot be examined
// at all (missing, or held by a running agent).
func CheckStoreFile(path string) (findings []string, err error) {
	db, err := openReadOnly(path)
	if errors.Is(err, ErrStoreLocked) {
		return nil, err
	}
	if err != nil {
		return []string{fmt.Sprintf("cannot be opened: %v", err)}, nil
	}
	defer db.Close()
	if err := checkDB(db); err != nil {
		return []string{err.Error()}, nil
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketOwned, bucketLog} {
			b := tx.Bucket(name)
			if b == nil {
				findings = append(findings, fmt.Sprintf("bucket %q is missing", name))
				continue
			}
			b.ForEach(func(k, v []byte) error {
				if !json.Valid(v) {
					findings = append(findings, fmt.Sprintf("bucket %q key %x: value is not JSON", name, k))
				}
				return nil
			})
		}
		return nil
	})
	return findings, err
}

// StoreExport is a whole store as JSON: every bucket's keys and values
// in order, values that are JSON kept as JSON.
type StoreExport struct {
	Path     string                `json:"path"`
	Exported time.Time             `json:"exported"`
	Buckets  map[string][]StoreKey `json:"buckets"`
}

// StoreKey is one key and its value; Raw holds a value that is not JSON.
type StoreKey struct {
	Key   []byte          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
	Raw   []byte          `json:"raw,omitempty"`
}

// ExportStoreFile reads every bucket of the store at path, without
// changing it. A store that fails its check is not exported: repair or
// restore from an older export instead.
func ExportStoreFile(path string, now time.Time) (*StoreExport, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := checkDB(db); err != nil {
		return nil, fmt.Errorf("state store %s: %w", path, err)
	}
	out := &StoreExport{Path: path, Exported: now, Buckets: map[string][]StoreKey{}}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			keys := []StoreKey{}
			err := b.ForEach(func(k, v []byte) error {
				sk := StoreKey{Key: append([]byte(nil), k...)}
				if json.Valid(v) {
					sk.Value = append(json.RawMessage(nil), v...)
				} else {
					sk.Raw = append([]byte(nil), v...)
				}
				keys = append(keys, sk)
				return nil
			})
			out.Buckets[string(name)] = keys
			return err
		})
	})
	return out, err
}

// ImportStoreFile writes exp into a new or empty store at path: every
// owned record and log line must decode and name its VM, disk and knob,
// or nothing is written. A store that holds anything, or that a running
// agent holds, is refused: an import never merges into live state.
func ImportStoreFile(path string, exp *StoreExport) error {
	if err := validateExport(exp); err != nil {
		return err
	}
	s, err := OpenStore(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer s.Close()
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketOwned, bucketLog} {
			if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
				return fmt.Errorf("state store %s is not empty (bucket %q): import only into a new store", path, name)
			}
		}
		for name, keys := range exp.Buckets {
			b, err := tx.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			for _, k := range keys {
				v := []byte(k.Value)
				if k.Raw != nil {
					v = k.Raw
				}
				if err := b.Put(k.Key, v); err != nil {
					return fmt.Errorf("bucket %q: %w", name, err)
				}
			}
			if name == string(bucketLog) && len(keys) > 0 {
				// New log lines go on after the imported ones.
				if err := b.SetSequence(binary.BigEndian.Uint64(keys[len(keys)-1].Key)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func validateExport(exp *StoreExport) error {
	var problems []error
	for i, k := range exp.Buckets[string(bucketOwned)] {
		var o Owned
		if err := json.Unmarshal(k.Value, &o); err != nil || o.VM == "" || o.Disk == "" || o.Knob == "" {
			problems = append(problems, fmt.Errorf("owned[%d] (key %q): not an owned knob with vm, disk and knob (%v)", i, k.Key, err))
		}
	}
	for i, k := range exp.Buckets[string(bucketLog)] {
		var r Record
		if len(k.Key) != 8 || json.Unmarshal(k.Value, &r) != nil {
			problems = append(problems, fmt.Errorf("log[%d]: not a log line with an 8-byte sequence key", i))
		}
	}
	return errors.Join(problems...)
}
