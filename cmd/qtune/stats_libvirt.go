package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
)

// libvirtSource reads domains through libvirt's own API: one bulk stats
// call, plus each domain's XML and each disk's throttle for the facts bulk
// stats lack. It never uses QMP passthrough, so it taints nothing.
type libvirtSource struct {
	v      *qmp.Libvirt
	domain string
}

func openLibvirtSource(ctx context.Context, f statsFlags) (diskSource, error) {
	v, err := qmp.DialLibvirt(ctx, qmp.LibvirtOptions{URI: f.uri, Socket: f.socket, CallTimeout: f.timeout})
	if err != nil {
		return nil, err
	}
	if f.domain != "" {
		if _, err := v.LookupDomain(ctx, f.domain); err != nil {
			v.Close()
			return nil, fmt.Errorf("domain %q: %w", f.domain, err)
		}
	}
	return &libvirtSource{v: v, domain: f.domain}, nil
}

func (s *libvirtSource) Sample(ctx context.Context) ([]sample.Disk, error) {
	var names []string
	if s.domain != "" {
		names = []string{s.domain}
	}
	byDomain, err := s.v.BlockStats(ctx, names...)
	if err != nil {
		return nil, err
	}
	doms := make([]string, 0, len(byDomain))
	for d := range byDomain {
		doms = append(doms, d)
	}
	sort.Strings(doms)
	var out []sample.Disk
	for _, dom := range doms {
		disks, err := s.facts(ctx, dom, byDomain[dom])
		if err != nil {
			return nil, err
		}
		out = append(out, disks...)
	}
	return out, nil
}

// facts fills in what bulk stats do not say from the live XML and
// DomainGetBlockIOTune. A domain that went away in between is skipped.
func (s *libvirtSource) facts(ctx context.Context, dom string, disks []sample.Disk) ([]sample.Disk, error) {
	doc, err := s.v.DomainXML(ctx, dom, false)
	if err != nil {
		return nil, nil
	}
	xdisks, err := qmp.ParseDomainDisks(doc)
	if err != nil {
		return nil, fmt.Errorf("domain %s: %w", dom, err)
	}
	byTarget := map[string]qmp.DomainDisk{}
	for _, x := range xdisks {
		byTarget[x.Target] = x
	}
	for i := range disks {
		d := &disks[i]
		x, ok := byTarget[d.Name]
		if !ok {
			continue
		}
		d.Format, d.BackingDepth, d.QOMPath = x.Format, x.BackingDepth, x.QOMPath()
		d.CacheDirect, d.CacheNoFlush = x.CacheFlags()
		if t, err := s.v.BlockIOTune(ctx, dom, d.Name, false); err == nil {
			d.Throttle = t
		}
	}
	return disks, nil
}

func (s *libvirtSource) Close() error { return s.v.Close() }
