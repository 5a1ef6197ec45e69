package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
	"github.com/qtune/qtune/virt"
)

// checkDomainRecords compares the store's owned knobs with the records
// the running domains of a libvirtd carry in their metadata; it returns
// the disagreements, and an error when libvirt cannot be asked.
func checkDomainRecords(ctx context.Context, path string, o virt.LibvirtOptions) ([]string, error) {
	owned, err := state.OwnedInFile(path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := virt.DialLibvirt(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("libvirt: %w", err)
	}
	defer v.Close()
	doms, err := v.Domains(ctx)
	if err != nil {
		return nil, fmt.Errorf("libvirt: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, d := range doms {
		seen[d.Name] = true
		carried, err := v.Ownership(ctx, d.Name, false)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: the domain's records cannot be read: %v", d.Name, err))
			continue
		}
		out = append(out, tuning.CompareRecords(d.Name, owned, carried)...)
	}
	var away []string
	for _, o := range owned {
		if !seen[o.VM] && o.Phase != state.PhaseReleased {
			away = append(away, fmt.Sprintf("%s/%s %s: the store holds a record of a domain not running here", o.VM, o.Disk, o.Knob))
		}
	}
	sort.Strings(away)
	return append(out, away...), nil
}
