package state

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// OwnedInFile reads the owned knobs of a store file without changing it
// (qtune state check); a running agent holds it (ErrStoreLocked).
func OwnedInFile(path string) ([]Owned, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var out []Owned
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOwned)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var o Owned
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("owned record %q: %w", k, err)
			}
			out = append(out, o)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state store %s: %w", path, err)
	}
	return out, nil
}
