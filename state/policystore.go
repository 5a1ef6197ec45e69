package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The last policy set that loaded cleanly is kept in the store, so that
// an agent started while a policy file is broken runs the rules it ran
// before instead of none: "the policy could not be read" must never read
// as "every rule was removed", which would release every knob qtune
// holds at the moment (after a reboot) the noisy neighbours are loudest.
var (
	bucketPolicy = []byte("policy")
	keyLastGood  = []byte("last-good")
)

// StoredPolicy is a policy set as it loaded cleanly: each file's text
// and SHA-256, and when it was loaded.
type StoredPolicy struct {
	LoadedAt time.Time         `json:"loaded_at"`
	Files    map[string]string `json:"files"`
	Hashes   map[string]string `json:"hashes"`
}

// Sources returns the files as the policy parser takes them.
func (p *StoredPolicy) Sources() map[string][]byte {
	out := make(map[string][]byte, len(p.Files))
	for n, t := range p.Files {
		out[n] = []byte(t)
	}
	return out
}

// PutLastGoodPolicy records srcs, a set that just loaded without errors.
func (s *Store) PutLastGoodPolicy(srcs map[string][]byte, at time.Time) error {
	p := StoredPolicy{LoadedAt: at.UTC(), Files: map[string]string{}, Hashes: map[string]string{}}
	for n, b := range srcs {
		sum := sha256.Sum256(b)
		p.Files[n], p.Hashes[n] = string(b), hex.EncodeToString(sum[:])
	}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPolicy)
		if err != nil {
			return err
		}
		return b.Put(keyLastGood, v)
	})
	if err != nil {
		return fmt.Errorf("record the policy in force: %w", err)
	}
	return nil
}

// LastGoodPolicy returns the last set recorded, or nil when there is
// none. A record whose text no longer matches its hashes is an error.
func (s *Store) LastGoodPolicy() (*StoredPolicy, error) {
	var p *StoredPolicy
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPolicy)
		if b == nil {
			return nil
		}
		v := b.Get(keyLastGood)
		if v == nil {
			return nil
		}
		p = &StoredPolicy{}
		return json.Unmarshal(v, p)
	})
	if err != nil {
		return nil, fmt.Errorf("read the last good policy: %w", err)
	}
	if p == nil {
		return nil, nil
	}
	for n, t := range p.Files {
		sum := sha256.Sum256([]byte(t))
		if hex.EncodeToString(sum[:]) != p.Hashes[n] {
			return nil, fmt.Errorf("last good policy: %s does not match its recorded hash", n)
		}
	}
	return p, nil
}
