// Package state is qtune's durable memory: the bbolt store and its
// records — the knobs qtune owns (what each was before qtune touched it,
// what qtune set, and how far the change got), the action log, the block
// jobs, the last policy set that loaded cleanly — and the types those
// records are made of. It sits below the executor and the job manager,
// which both write into it; it knows nothing of QEMU or libvirt.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// ErrStoreLocked means another qtune holds the state store.
var ErrStoreLocked = errors.New("state: state store is locked by another process")

// ErrStoreCorrupt means the state store failed bbolt's consistency check.
// It is never replaced silently: an SRE decides (see `qtune state`).
var ErrStoreCorrupt = errors.New("state: state store failed its consistency check")

var (
	bucketOwned = []byte("owned")
	bucketLog   = []byte("log")
)

// Phase of an owned knob.
const (
	PhaseIntent  = "intent"  // written before acting; the change may or may not have happened
	PhaseApplied = "applied" // verified in effect
	PhaseFailed  = "failed"  // the apply or its verification failed
	// PhaseReleased: someone else changed the knob; qtune let go of it and
	// will not touch it again until the rule that owned it stops firing.
	PhaseReleased = "released"
)

// Owned is a knob qtune changed: what it was before qtune touched it, and
// what qtune set.
type Owned struct {
	Target
	Knob       policy.Knob   `json:"knob"`
	Rule       string        `json:"rule"`
	Original   KnobState     `json:"original"`
	Applied    KnobState     `json:"applied"`
	Phase      string        `json:"phase"`
	Since      time.Time     `json:"since"`       // first change
	LastChange time.Time     `json:"last_change"` // starts the cooldown
	Cooldown   time.Duration `json:"cooldown"`
	Persist    bool          `json:"persist,omitempty"`
	// VMID is the VM the knob was taken on; zero in records written
	// before qtune kept it (the first identity seen is adopted then).
	VMID sample.VMIdentity `json:"vm_identity,omitzero"`
	// Host is the host qtune made the change on, Seq orders the changes
	// to one VM: both travel with a libvirt domain in its metadata, so
	// that the host a domain lands on knows whose record it adopted.
	Host string `json:"host,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
}

// Record is one line of the action log.
type Record struct {
	Seq    uint64      `json:"seq"`
	At     time.Time   `json:"at"`
	Target             // vm, disk
	Knob   policy.Knob `json:"knob"`
	Rule   string      `json:"rule"`
	Result Result      `json:"result,omitempty"`
	// Job is the state a block job reached, on a line of a job's step
	// (Result is then empty).
	Job    JobState           `json:"job,omitempty"`
	Reason string             `json:"reason,omitempty"` // why refused, failed or drifted
	Inputs map[string]float64 `json:"inputs,omitempty"`
	Before string             `json:"before,omitempty"`
	After  string             `json:"after,omitempty"`
}

// Outcome is the line's outcome as logs and status show it: a job's
// step reads "job-" and its state. Lines written before the job state
// had a field of its own carry that text in Result.
func (r Record) Outcome() string {
	if r.Job != "" {
		return "job-" + string(r.Job)
	}
	return string(r.Result)
}

// Store is the bbolt state store: owned knobs and the action log.
type Store struct {
	db      *bolt.DB
	keepLog int
}

// OpenStore opens (or creates) dir/state.db. Another process holding it
// is reported at once, not waited for.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "state.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("state store %s: %w", path, ErrStoreLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("state store %s: %w", path, err)
	}
	if err := checkDB(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("state store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketOwned, bucketLog} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state store %s: %w", path, err)
	}
	return &Store{db: db, keepLog: 10000}, nil
}

// checkDB runs bbolt's consistency check over every page. A corrupt
// page can also make bbolt panic while walking it; that is a finding too.
func checkDB(db *bolt.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrStoreCorrupt, r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		var found []error
		for e := range tx.Check() {
			found = append(found, e)
		}
		if len(found) > 0 {
			return fmt.Errorf("%w: %w", ErrStoreCorrupt, errors.Join(found...))
		}
		return nil
	})
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

func ownedKey(t Target, k policy.Knob) []byte {
	return []byte(t.VM + "\x00" + t.Disk + "\x00" + string(k))
}

// Owned returns the ownership record of a knob, if qtune owns it.
func (s *Store) Owned(t Target, k policy.Knob) (*Owned, error) {
	var o *Owned
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOwned).Get(ownedKey(t, k))
		if b == nil {
			return nil
		}
		o = &Owned{}
		return json.Unmarshal(b, o)
	})
	if err != nil {
		return nil, fmt.Errorf("read owned %s %s: %w", t, k, err)
	}
	return o, nil
}

// PutOwned writes an ownership record (and syncs it to disk).
func (s *Store) PutOwned(o *Owned) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOwned).Put(ownedKey(o.Target, o.Knob), b) })
	if err != nil {
		return fmt.Errorf("record ownership of %s %s: %w", o.Target, o.Knob, err)
	}
	return nil
}

// Release forgets a knob: qtune no longer owns it.
func (s *Store) Release(t Target, k policy.Knob) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOwned).Delete(ownedKey(t, k)) })
	if err != nil {
		return fmt.Errorf("release %s %s: %w", t, k, err)
	}
	return nil
}

// AllOwned lists every owned knob. A record that does not decode is
// named in the error and left out; every other record is still
// returned, so one bad record does not hide the rest.
func (s *Store) AllOwned() ([]Owned, error) {
	var out []Owned
	var bad []error
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwned).ForEach(func(k, v []byte) error {
			var o Owned
			if err := json.Unmarshal(v, &o); err != nil {
				bad = append(bad, fmt.Errorf("owned record %q: %w", strings.ReplaceAll(string(k), "\x00", "/"), err))
				return nil
			}
			out = append(out, o)
			return nil
		})
	})
	if err != nil {
		return out, fmt.Errorf("read owned knobs: %w", err)
	}
	return out, errors.Join(bad...)
}

// Append adds a record to the action log, dropping the oldest beyond the
// retention.
func (s *Store) Append(r *Record) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLog)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		r.Seq = seq
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(seq), v); err != nil {
			return err
		}
		if seq > uint64(s.keepLog) {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq-uint64(s.keepLog); k, _ = c.Next() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

// Records returns up to n of the newest log records, oldest first.
func (s *Store) Records(n int) ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}
