package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// syncJobRecords puts the copies qtune runs on each libvirt domain into
// the domain's records, beside its knobs, and takes them out when they
// end: a domain that cannot migrate says why to whoever reads it. It
// writes only when a domain's set of copies changed.
func (a *Agent) syncJobRecords(ctx context.Context) {
	a.mu.Lock()
	jm := a.jobs
	a.mu.Unlock()
	if _, ok := a.src.(*libvirtSource); !ok || jm == nil {
		return
	}
	jobs, err := jm.Jobs()
	if err != nil {
		return
	}
	byVM := map[string][]virt.CopyJob{}
	for _, j := range jobs {
		if !j.State.Final() {
			byVM[j.VM] = append(byVM[j.VM], copyJobOf(j, a.exec.Host()))
		}
	}
	if a.recon.jobsWritten == nil {
		a.recon.jobsWritten = map[string]string{}
	}
	vms := map[string]bool{}
	for vm := range byVM {
		vms[vm] = true
	}
	for vm := range a.recon.jobsWritten {
		vms[vm] = true
	}
	for vm := range vms {
		sig := jobsSignature(byVM[vm])
		if a.recon.jobsWritten[vm] == sig {
			continue
		}
		if err := a.exec.RecordJobs(ctx, vm, byVM[vm]); err != nil {
			a.log.Warn("copies not recorded in the domain", "vm", vm, "error", err.Error())
			continue
		}
		if sig == "" {
			delete(a.recon.jobsWritten, vm)
		} else {
			a.recon.jobsWritten[vm] = sig
		}
	}
}

func copyJobOf(j state.Job, host string) virt.CopyJob {
	return virt.CopyJob{ID: j.ID, Kind: string(j.Kind), Disk: j.Disk, Source: j.Source, Target: j.Dest, Host: host, Since: j.Created}
}

func jobsSignature(js []virt.CopyJob) string {
	ids := make([]string, 0, len(js))
	for _, j := range js {
		ids = append(ids, fmt.Sprintf("%s:%s:%s", j.ID, j.Disk, j.Target))
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}
