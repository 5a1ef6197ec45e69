package virt

import (
	"context"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/qtune/qtune/internal/sample"
)

// blockStatsParamsMax is REMOTE_DOMAIN_BLOCK_STATS_PARAMETERS_MAX: the
// daemon refuses to be asked for more.
const blockStatsParamsMax = 16

// DiskStats reads the counters of the named disks (targets, e.g. vda) of
// one domain with libvirt's per-disk call, DomainBlockStatsFlags, one
// call per disk. It is libvirt's only other API for per-disk counters
// and costs more than DomainStats: each call has libvirtd ask QEMU for
// query-blockstats of every disk of the domain and keep the one asked
// for. The agent samples with DomainStats; this is here to measure the
// difference.
func (v *Libvirt) DiskStats(ctx context.Context, domain string, disks []string) ([]sample.Disk, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return nil, err
	}
	out := make([]sample.Disk, 0, len(disks))
	for _, disk := range disks {
		var params []libvirt.TypedParam
		err := v.call(ctx, "get block stats of "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
			var err error
			params, _, err = l.DomainBlockStatsFlags(d, disk, blockStatsParamsMax, 0)
			return err
		})
		if err != nil {
			return out, err
		}
		out = append(out, DecodeDiskStats(domain, disk, params, time.Now()))
	}
	return out, nil
}

// DecodeDiskStats turns DomainBlockStatsFlags' parameters into a disk.
func DecodeDiskStats(domain, disk string, params []libvirt.TypedParam, at time.Time) sample.Disk {
	vals := map[string]any{}
	for _, p := range params {
		vals[p.Field] = p.Value.I
	}
	return sample.Disk{
		VM: domain, Name: disk, Time: at,
		Counters: sample.Counters{
			ReadOps: asUint(vals["rd_operations"]), ReadBytes: asUint(vals["rd_bytes"]), ReadTimeNs: asUint(vals["rd_total_times"]),
			WriteOps: asUint(vals["wr_operations"]), WriteBytes: asUint(vals["wr_bytes"]), WriteTimeNs: asUint(vals["wr_total_times"]),
			FlushOps: asUint(vals["flush_operations"]), FlushTimeNs: asUint(vals["flush_total_times"]),
		},
	}
}
