package fleet

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := Config{Endpoints: []string{"http://127.0.0.1:2379"},
		Budgets: []Budget{{Name: "nfs-a", Dirs: []string{"/nfs/a"}, MaxCopies: 1}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, []string{"no etcd endpoints"}},
		{"short ttl", func(c *Config) { c.LeaseTTL = time.Second }, []string{"under 2s"}},
		{"fractional ttl", func(c *Config) { c.LeaseTTL = 2500 * time.Millisecond }, []string{"whole seconds"}},
		{"cert without key", func(c *Config) { c.CertFile = "/c.pem" }, []string{"both cert_file and key_file"}},
		{"password alone", func(c *Config) { c.Password = "x" }, []string{"password without a username"}},
		{"bad budgets", func(c *Config) {
			c.Budgets = append(c.Budgets, Budget{Name: "nfs-a", Dirs: []string{"rel"}, MaxCopies: 0}, Budget{Name: "a/b"})
		}, []string{`"nfs-a" defined twice`, `max_copies 0 is under 1`, `"rel" is not absolute`, `"a/b" has a slash`, `"a/b" matches no directory`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			c.Budgets = append([]Budget(nil), good.Budgets...)
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestMatch(t *testing.T) {
	c := Config{Budgets: []Budget{
		{Name: "nfs-a", Dirs: []string{"/nfs/a/"}},
		{Name: "ceph", Dirs: []string{"/ceph", "/mnt/rbd"}},
	}}
	for _, tc := range []struct {
		dirs []string
		want string
	}{
		{[]string{"/nfs/a"}, "nfs-a"},
		{[]string{"/nfs/a/vm1/../vm2"}, "nfs-a"},
		{[]string{"/nfs/ab"}, ""},
		{[]string{"/nfs"}, ""},
		{[]string{"/local", "/ceph/pool"}, "ceph"},
		{[]string{"/mnt/rbd/x", "/nfs/a/y"}, "nfs-a,ceph"},
		{[]string{"", "/nfs/b/../a/z"}, "nfs-a"},
	} {
		var got []string
		for _, b := range c.Match(tc.dirs...) {
			got = append(got, b.Name)
		}
		if g := strings.Join(got, ","); g != tc.want {
			t.Errorf("Match(%q) = %q, want %q", tc.dirs, g, tc.want)
		}
	}
}

func TestCountedAndOrder(t *testing.T) {
	b := Budget{Name: "x", MaxSpeed: 16 << 20}
	for _, tc := range []struct{ speed, want uint64 }{{0, 16 << 20}, {4 << 20, 4 << 20}, {64 << 20, 16 << 20}} {
		if got := counted(tc.speed, b); got != tc.want {
			t.Errorf("counted(%d) = %d, want %d", tc.speed, got, tc.want)
		}
	}
	if got := counted(0, Budget{}); got != 0 {
		t.Errorf("unbounded budget counts %d", got)
	}
	w := []Slot{{JobID: "late", Revision: 9}, {JobID: "run-late", Running: true, Revision: 8}, {JobID: "early", Revision: 3}, {JobID: "run-early", Running: true, Revision: 5}}
	sortWaiters(w)
	var order []string
	for _, s := range w {
		order = append(order, s.JobID)
	}
	if got := strings.Join(order, ","); got != "run-early,run-late,early,late" {
		t.Errorf("served in order %s", got)
	}
}
