package sample

import "testing"

// Every libvirt cache mode reads back as itself, and the names the code
// uses for the host side alone are the ones libvirt writes.
func TestCacheModeRoundTrip(t *testing.T) {
	for _, mode := range []string{"none", "writeback", "unsafe", "directsync", "writethrough", "direct,no-flush"} {
		c, ok := ParseCacheMode(mode)
		if !ok || c.CacheMode() != mode {
			t.Errorf("%s: parsed %+v (ok %v), named back %q", mode, c, ok, c.CacheMode())
		}
	}
	for _, c := range []struct {
		direct, noFlush bool
		want            string
	}{{false, false, "writeback"}, {true, false, "none"}, {false, true, "unsafe"}, {true, true, "direct,no-flush"}} {
		if got := (Disk{CacheDirect: c.direct, CacheNoFlush: c.noFlush}).CacheMode(); got != c.want {
			t.Errorf("direct=%v no-flush=%v: %q, want %q", c.direct, c.noFlush, got, c.want)
		}
	}
	if c, ok := ParseCacheMode("default"); !ok || c != HostCache(false, false) {
		t.Errorf("default: %+v %v", c, ok)
	}
	if _, ok := ParseCacheMode("bogus"); ok {
		t.Error("an unknown mode parsed")
	}
}
