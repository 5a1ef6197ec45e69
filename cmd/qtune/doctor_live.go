package main

import (
	"context"
	"fmt"

	"github.com/qtune/qtune/doctor"
	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/qmp"
)

// live samples the VMs, then checks each disk and its image (read with
// force-share while the VM holds it; qemu-img check runs one image at a
// time).
func (f *doctorFlags) live(ctx context.Context, q doctor.QemuImg) ([]doctor.Report, []error) {
	disks, errs := f.sampleLive(ctx)
	facts := make([]doctor.ImageFacts, len(disks))
	notes := make([]string, len(disks))
	var gathered []doctor.ImageFacts
	for i, l := range disks {
		if l.Image == "" {
			continue
		}
		fa, err := q.Gather(ctx, l.Image, l.L2Cache, f.noCheck)
		if err != nil {
			notes[i] = fmt.Sprintf("image checks skipped: %v", err)
			continue
		}
		facts[i] = fa
		gathered = append(gathered, fa)
	}
	// Every disk of the host shares in the overcommit of its filesystem.
	doctor.ShareFilesystems(gathered)
	byPath := map[string]doctor.ImageFacts{}
	for _, fa := range gathered {
		byPath[fa.Path] = fa
	}
	reports := make([]doctor.Report, 0, len(disks))
	for i, l := range disks {
		fa, ok := byPath[facts[i].Path]
		if !ok || facts[i].Path == "" {
			r := doctor.CheckLive(l, nil)
			if notes[i] != "" {
				r.Notes = append(r.Notes, notes[i])
			}
			reports = append(reports, r)
			continue
		}
		reports = append(reports, doctor.CheckLive(l, &fa))
	}
	return reports, errs
}

// sampleLive reads the VMs through facts, as the agent and qtune stats
// do: the same names, the same figures.
func (f *doctorFlags) sampleLive(ctx context.Context) ([]doctor.LiveDisk, []error) {
	o := facts.Options{Interval: f.interval, CallTimeout: f.callTO, Details: true}
	switch {
	case !f.libvirt && f.qmpDir != "":
		found, err := qmp.Sockets(f.qmpDir)
		if err != nil || len(found) == 0 {
			return nil, []error{fmt.Errorf("--qmp-dir %s: no *.sock QMP socket in it", f.qmpDir)}
		}
		o.QMPSockets = found
	case !f.libvirt:
		o.QMPSockets = []string(f.qmp)
	default:
		o.LibvirtURI, o.LibvirtSocket = f.uri, f.socket
		if f.domain != "" {
			o.Domains = []string{f.domain}
		}
	}
	src, err := facts.OpenSampler(ctx, o, nil)
	if err != nil {
		return nil, []error{err}
	}
	defer src.Close()
	return doctor.Live(ctx, src, f.interval)
}
