package state

import (
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestLastGoodPolicyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, err := s.LastGoodPolicy(); err != nil || p != nil {
		t.Fatalf("empty store: %v, %v; want no set", p, err)
	}
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	srcs := map[string][]byte{"/etc/qtune/policy.d/a.hcl": []byte(`rule "a" {}`), "/etc/qtune/policy.d/b.hcl": []byte("# b\n")}
	if err := s.PutLastGoodPolicy(srcs, at); err != nil {
		t.Fatal(err)
	}
	p, err := s.LastGoodPolicy()
	if err != nil || p == nil {
		t.Fatalf("stored set: %v, %v", p, err)
	}
	if !p.LoadedAt.Equal(at) || len(p.Hashes) != 2 {
		t.Fatalf("stored %+v", p)
	}
	for n, b := range p.Sources() {
		if string(b) != string(srcs[n]) {
			t.Fatalf("%s: %q, want %q", n, b, srcs[n])
		}
	}
	// A record whose text no longer matches its hash is not used.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPolicy)
		v := strings.Replace(string(b.Get(keyLastGood)), `rule \"a\"`, `rule \"z\"`, 1)
		return b.Put(keyLastGood, []byte(v))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LastGoodPolicy(); err == nil || !strings.Contains(err.Error(), "a.hcl does not match") {
		t.Fatalf("tampered set: %v; want a hash mismatch naming a.hcl", err)
	}
}
