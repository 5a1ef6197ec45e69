package doctor

import (
	"context"
	"fmt"
	"sort"

	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/virt"
)

// LiveLibvirt samples libvirt domains (the named ones, or every active
// one) twice, o.Interval apart, through libvirt's own API only: nothing
// is tainted, so QEMU's failed and invalid operation counters are not
// known (no libvirt API reports them). A domain that cannot be read is an
// error of its own.
func LiveLibvirt(ctx context.Context, v *virt.Libvirt, domains []string, o LiveOptions) ([]LiveDisk, []error) {
	hr := hoststat.NewReader()
	read := func() (map[string][]sample.Disk, map[string]map[string]hoststat.Image, error) {
		cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
		defer cancel()
		by, err := v.BlockStats(cctx, domains...)
		if err != nil {
			return nil, nil, err
		}
		host := map[string]map[string]hoststat.Image{}
		for dom, disks := range by {
			host[dom] = hostPass(hr, disks)
		}
		return by, host, nil
	}
	first, _, err := read()
	if err != nil {
		return nil, []error{err}
	}
	if err := sleep(ctx, o.Interval); err != nil {
		return nil, []error{err}
	}
	second, host, err := read()
	if err != nil {
		return nil, []error{err}
	}
	names := make([]string, 0, len(second))
	for d := range second {
		names = append(names, d)
	}
	sort.Strings(names)
	var out []LiveDisk
	var errs []error
	for _, dom := range names {
		cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
		ls, err := libvirtDomain(cctx, v, dom, first[dom], second[dom], host[dom])
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("domain %s: %w", dom, err))
			continue
		}
		out = append(out, ls...)
	}
	return out, errs
}

// libvirtDomain adds to a domain's samples what its state, disk errors,
// live XML and throttles say.
func libvirtDomain(ctx context.Context, v *virt.Libvirt, dom string, a, b []sample.Disk, host map[string]hoststat.Image) ([]LiveDisk, error) {
	st, err := v.DomainState(ctx, dom)
	if err != nil {
		return nil, err
	}
	ioErrs, err := v.DiskErrors(ctx, dom)
	if err != nil {
		return nil, err
	}
	doc, err := v.DomainXML(ctx, dom, false)
	if err != nil {
		return nil, err
	}
	xdisks, err := virt.ParseDomainDisks(doc)
	if err != nil {
		return nil, err
	}
	byTarget := map[string]virt.DomainDisk{}
	for _, x := range xdisks {
		byTarget[x.Target] = x
	}
	prev := map[string]sample.Disk{}
	for _, d := range a {
		prev[d.Name] = d
	}
	var out []LiveDisk
	for _, d := range b {
		x, ok := byTarget[d.Name]
		if !ok {
			continue
		}
		d.Format, d.BackingDepth = x.Format, x.BackingDepth
		if t, err := v.BlockIOTune(ctx, dom, d.Name, false); err == nil {
			d.Throttle = t
		}
		l := liveFromSample(prev[d.Name], d, host[d.Name])
		l.RunState = st.Status
		l.IOStatus = orDefault(ioErrs[d.Name], "ok")
		l.CacheKnown = true
		c, _ := sample.ParseCacheMode(x.Cache)
		l.CacheWriteback, l.CacheDirect, l.CacheNoFlush = c.Writeback, c.Direct, c.NoFlush
		// libvirt passes discard, detect-zeroes and aio to QEMU only when
		// the XML sets them: otherwise QEMU's defaults apply (aio is left
		// unknown: libvirt may pick native for cache=none itself).
		l.AIO = x.IO
		l.Discard, l.DetectZeroes = orDefault(x.Discard, "ignore"), orDefault(x.DetectZeroes, "off")
		l.L2Cache = x.MetadataCacheMax
		if l.L2Cache == 0 && d.Format == "qcow2" {
			l.L2Cache = qmp.DefaultL2CacheMax
		}
		out = append(out, l)
	}
	return out, nil
}
