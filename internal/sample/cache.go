package sample

// Cache is a disk's cache mode as QEMU's three flags: the guest-visible
// write cache (Writeback) and the host side (Direct: O_DIRECT; NoFlush:
// the guest's flushes are dropped). libvirt's <driver cache=...> names
// five of the eight combinations; CacheMode and ParseCacheMode are the
// one place that mapping is written.
type Cache struct {
	Writeback, Direct, NoFlush bool
}

// HostCache is the cache of a disk of which only the host side is known
// (a sample): the guest's write cache is taken to be on, as QEMU's
// default is and as every mode qtune sets leaves it.
func HostCache(direct, noFlush bool) Cache {
	return Cache{Writeback: true, Direct: direct, NoFlush: noFlush}
}

// CacheMode names the flags as libvirt does: none, writeback, unsafe,
// directsync or writethrough. Direct and no-flush together have no
// libvirt name and are "direct,no-flush".
func (c Cache) CacheMode() string {
	switch {
	case c.Direct && c.NoFlush:
		return "direct,no-flush"
	case c.NoFlush:
		return "unsafe"
	case c.Direct && c.Writeback:
		return "none"
	case c.Writeback:
		return "writeback"
	case c.Direct:
		return "directsync"
	}
	return "writethrough"
}

// ParseCacheMode is CacheMode's inverse; "" and "default" are QEMU's
// default, writeback. ok is false for a name it does not know.
func ParseCacheMode(mode string) (c Cache, ok bool) {
	switch mode {
	case "", "default", "writeback":
		return Cache{Writeback: true}, true
	case "none":
		return Cache{Writeback: true, Direct: true}, true
	case "unsafe":
		return Cache{Writeback: true, NoFlush: true}, true
	case "directsync":
		return Cache{Direct: true}, true
	case "writethrough":
		return Cache{}, true
	case "direct,no-flush":
		return Cache{Writeback: true, Direct: true, NoFlush: true}, true
	}
	return Cache{Writeback: true}, false
}

// CacheMode names the disk's host cache mode (see HostCache).
func (d Disk) CacheMode() string { return HostCache(d.CacheDirect, d.CacheNoFlush).CacheMode() }
