package virt

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/qtune/qtune/internal/sample"
)

// DomainInfo names a running domain.
type DomainInfo struct {
	Name string
	UUID string
	ID   int32
	// ref is the domain as libvirt listed it, which DomainStatsOf passes
	// back without looking it up again.
	ref libvirt.Domain
}

// Domains lists the running domains.
func (v *Libvirt) Domains(ctx context.Context) ([]DomainInfo, error) {
	var doms []libvirt.Domain
	err := v.call(ctx, "list domains", func(l *libvirt.Libvirt) error {
		var err error
		doms, _, err = l.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive)
		return err
	})
	out := make([]DomainInfo, 0, len(doms))
	for _, d := range doms {
		out = append(out, DomainInfo{Name: d.Name, UUID: uuidString(d.UUID), ID: d.ID, ref: d})
	}
	return out, err
}

// DomainStatsOf reads the state and block counters of the listed
// domains (as Domains listed them) in one call, libvirt's
// virDomainListGetStats: libvirtd asks only their QEMUs. A domain not
// listed by Domains is looked up by name first.
func (v *Libvirt) DomainStatsOf(ctx context.Context, doms []DomainInfo) (map[string]DomainStat, error) {
	if len(doms) == 0 {
		return map[string]DomainStat{}, nil
	}
	refs := make([]libvirt.Domain, 0, len(doms))
	for _, d := range doms {
		if d.ref.Name == "" {
			var err error
			if d.ref, err = v.lookup(ctx, d.Name); err != nil {
				return nil, err
			}
		}
		refs = append(refs, d.ref)
	}
	return v.domainStats(ctx, refs)
}

func uuidString(u libvirt.UUID) string {
	h := fmt.Sprintf("%x", u[:])
	if len(h) != 32 {
		return h
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// lookup finds a domain by name; ErrDomainNotFound when there is none.
func (v *Libvirt) lookup(ctx context.Context, name string) (libvirt.Domain, error) {
	var d libvirt.Domain
	err := v.call(ctx, "look up domain "+name, func(l *libvirt.Libvirt) error {
		var err error
		d, err = l.DomainLookupByName(name)
		return err
	})
	return d, err
}

// LookupDomain checks that a domain exists.
func (v *Libvirt) LookupDomain(ctx context.Context, name string) (DomainInfo, error) {
	d, err := v.lookup(ctx, name)
	return DomainInfo{Name: d.Name, UUID: uuidString(d.UUID), ID: d.ID}, err
}

// BlockStats reads the block counters of the named domains, or of every
// active domain when names is empty; see DomainStats.
func (v *Libvirt) BlockStats(ctx context.Context, names ...string) (map[string][]sample.Disk, error) {
	st, err := v.DomainStats(ctx, names...)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]sample.Disk, len(st))
	for name, s := range st {
		out[name] = s.Disks
	}
	return out, nil
}

// DomainStat is one domain as one bulk stats call saw it.
type DomainStat struct {
	UUID   string // tells this domain from a later one with the same name
	State  string // running, paused, shutoff, ... (libvirt's state names)
	Reason string // why it is in that state: ioerror, user, ...; "" when unknown
	Disks  []sample.Disk
}

// DomainStats reads the state and block counters of the named domains,
// or of every active domain (running, paused, ...) when names is empty,
// in one ConnectGetAllDomainStats call: a VM paused on an I/O error is the
// one an SRE most needs to see. Disks are named by target (vda); the
// counters are stamped when the call returns.
func (v *Libvirt) DomainStats(ctx context.Context, names ...string) (map[string]DomainStat, error) {
	var doms []libvirt.Domain
	for _, n := range names {
		d, err := v.lookup(ctx, n)
		if err != nil {
			return nil, err
		}
		doms = append(doms, d)
	}
	return v.domainStats(ctx, doms)
}

// domainStats is one stats call for doms, or for every active domain
// when doms is empty.
func (v *Libvirt) domainStats(ctx context.Context, doms []libvirt.Domain) (map[string]DomainStat, error) {
	var recs []libvirt.DomainStatsRecord
	err := v.call(ctx, "get all domain stats", func(l *libvirt.Libvirt) error {
		// NOWAIT: a domain busy with a job (or a hung QEMU) reports what
		// libvirt has at hand instead of stalling the call for everyone.
		flags := uint32(libvirt.ConnectGetAllDomainsStatsNowait)
		if len(doms) == 0 {
			flags |= uint32(libvirt.ConnectGetAllDomainsStatsActive)
		}
		var err error
		recs, err = l.ConnectGetAllDomainStats(doms, uint32(libvirt.DomainStatsBlock|libvirt.DomainStatsState), flags)
		return err
	})
	if err != nil {
		return nil, err
	}
	at := time.Now()
	out := make(map[string]DomainStat, len(recs))
	for _, r := range recs {
		st := DecodeDomainStats(r.Dom.Name, r.Params, at)
		st.UUID = uuidString(r.Dom.UUID)
		out[r.Dom.Name] = st
	}
	return out, nil
}

// DecodeDomainStats turns one domain's stats record (state.* and block.*
// typed parameters) into its state and disks.
func DecodeDomainStats(domain string, params []libvirt.TypedParam, at time.Time) DomainStat {
	st := DomainStat{Disks: DecodeBlockStats(domain, params, at)}
	state, reason := int32(-1), int32(-1)
	for _, p := range params {
		switch p.Field {
		case "state.state":
			state = int32(asUint(p.Value.I))
		case "state.reason":
			reason = int32(asUint(p.Value.I))
		}
	}
	if state >= 0 {
		st.State, st.Reason = StateName(libvirt.DomainState(state)), StateReason(libvirt.DomainState(state), reason)
	}
	return st
}

// DecodeBlockStats turns the "block.*" typed parameters of one domain's
// stats record into disks.
func DecodeBlockStats(domain string, params []libvirt.TypedParam, at time.Time) []sample.Disk {
	vals := map[string]any{}
	var timed map[string]any // the timed groups' fields only: most libvirts send none
	for _, p := range params {
		vals[p.Field] = p.Value.I
		if strings.Contains(p.Field, timedGroupInfix) {
			if timed == nil {
				timed = map[string]any{}
			}
			timed[p.Field] = p.Value.I
		}
	}
	count := int(asUint(vals["block.count"]))
	out := make([]sample.Disk, 0, count)
	for i := 0; i < count; i++ {
		k := "block." + strconv.Itoa(i) + "."
		name, _ := vals[k+"name"].(string)
		if name == "" {
			continue
		}
		if _, isBacking := vals[k+"backingIndex"]; isBacking && count > 1 && i > 0 && name == out[len(out)-1].Name {
			continue // a backing layer of the disk before it (STATS_BACKING)
		}
		path, _ := vals[k+"path"].(string)
		out = append(out, sample.Disk{
			VM: domain, Name: name, Path: path, Time: at,
			VirtualSize: asUint(vals[k+"capacity"]), Allocation: asUint(vals[k+"allocation"]),
			Counters: sample.Counters{
				ReadOps: asUint(vals[k+"rd.reqs"]), ReadBytes: asUint(vals[k+"rd.bytes"]), ReadTimeNs: asUint(vals[k+"rd.times"]),
				WriteOps: asUint(vals[k+"wr.reqs"]), WriteBytes: asUint(vals[k+"wr.bytes"]), WriteTimeNs: asUint(vals[k+"wr.times"]),
				FlushOps: asUint(vals[k+"fl.reqs"]), FlushTimeNs: asUint(vals[k+"fl.times"]),
				ReadHist:  decodeHistogram(k+"latency_histogram.read.", vals),
				WriteHist: decodeHistogram(k+"latency_histogram.write.", vals),
			},
			Timed: decodeTimed(k, timed),
		})
	}
	return out
}

func asUint(v any) uint64 {
	switch n := v.(type) {
	case uint64:
		return n
	case uint32:
		return uint64(n)
	case int64:
		if n > 0 {
			return uint64(n)
		}
	case int32:
		if n > 0 {
			return uint64(n)
		}
	}
	return 0
}

// iotuneFields maps libvirt's block I/O tune parameters to qtune's
// throttle fields.
var iotuneFields = []struct {
	name string
	get  func(*sample.Throttle) *uint64
}{
	{"total_bytes_sec", func(t *sample.Throttle) *uint64 { return &t.BPS }},
	{"read_bytes_sec", func(t *sample.Throttle) *uint64 { return &t.BPSRead }},
	{"write_bytes_sec", func(t *sample.Throttle) *uint64 { return &t.BPSWrite }},
	{"total_iops_sec", func(t *sample.Throttle) *uint64 { return &t.IOPS }},
	{"read_iops_sec", func(t *sample.Throttle) *uint64 { return &t.IOPSRead }},
	{"write_iops_sec", func(t *sample.Throttle) *uint64 { return &t.IOPSWrite }},
	{"total_bytes_sec_max", func(t *sample.Throttle) *uint64 { return &t.BPSMax }},
	{"read_bytes_sec_max", func(t *sample.Throttle) *uint64 { return &t.BPSReadMax }},
	{"write_bytes_sec_max", func(t *sample.Throttle) *uint64 { return &t.BPSWriteMax }},
	{"total_iops_sec_max", func(t *sample.Throttle) *uint64 { return &t.IOPSMax }},
	{"read_iops_sec_max", func(t *sample.Throttle) *uint64 { return &t.IOPSReadMax }},
	{"write_iops_sec_max", func(t *sample.Throttle) *uint64 { return &t.IOPSWriteMax }},
	{"total_bytes_sec_max_length", func(t *sample.Throttle) *uint64 { return &t.BPSMaxLen }},
	{"read_bytes_sec_max_length", func(t *sample.Throttle) *uint64 { return &t.BPSReadMaxLen }},
	{"write_bytes_sec_max_length", func(t *sample.Throttle) *uint64 { return &t.BPSWriteMaxLen }},
	{"total_iops_sec_max_length", func(t *sample.Throttle) *uint64 { return &t.IOPSMaxLen }},
	{"read_iops_sec_max_length", func(t *sample.Throttle) *uint64 { return &t.IOPSReadMaxLen }},
	{"write_iops_sec_max_length", func(t *sample.Throttle) *uint64 { return &t.IOPSWriteMaxLen }},
	{"size_iops_sec", func(t *sample.Throttle) *uint64 { return &t.IOPSSize }},
}

// ThrottleFromParams decodes DomainGetBlockIOTune's parameters.
func ThrottleFromParams(params []libvirt.TypedParam) sample.Throttle {
	var t sample.Throttle
	vals := map[string]any{}
	for _, p := range params {
		vals[p.Field] = p.Value.I
	}
	for _, f := range iotuneFields {
		*f.get(&t) = asUint(vals[f.name])
	}
	t.Group, _ = vals["group_name"].(string)
	return t
}

// ThrottleParams encodes a throttle for DomainSetBlockIOTune: every
// value as ullong, so that zeros clear what was set before.
func ThrottleParams(t sample.Throttle) []libvirt.TypedParam {
	out := make([]libvirt.TypedParam, 0, len(iotuneFields)+1)
	for _, f := range iotuneFields {
		out = append(out, libvirt.TypedParam{Field: f.name, Value: *libvirt.NewTypedParamValueUllong(*f.get(&t))})
	}
	if t.Group != "" {
		out = append(out, libvirt.TypedParam{Field: "group_name", Value: *libvirt.NewTypedParamValueString(t.Group)})
	}
	return out
}

// BlockIOTune reads a disk's throttle (disk is the target, e.g. vda).
func (v *Libvirt) BlockIOTune(ctx context.Context, domain, disk string, inactive bool) (sample.Throttle, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return sample.Throttle{}, err
	}
	flags := uint32(libvirt.DomainAffectLive) | uint32(libvirt.TypedParamStringOkay)
	if inactive {
		flags = uint32(libvirt.DomainAffectConfig) | uint32(libvirt.TypedParamStringOkay)
	}
	var params []libvirt.TypedParam
	err = v.call(ctx, "get block I/O tune of "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		// The first call with nparams 0 asks how many there are.
		_, n, err := l.DomainGetBlockIOTune(d, libvirt.OptString{disk}, 0, flags)
		if err != nil {
			return err
		}
		params, _, err = l.DomainGetBlockIOTune(d, libvirt.OptString{disk}, n, flags)
		return err
	})
	return ThrottleFromParams(params), err
}

// SetBlockIOTune sets a disk's throttle on the live domain, and with
// persist also in its persistent definition.
func (v *Libvirt) SetBlockIOTune(ctx context.Context, domain, disk string, t sample.Throttle, persist bool) error {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return err
	}
	flags := uint32(libvirt.DomainAffectLive)
	if persist {
		flags |= uint32(libvirt.DomainAffectConfig)
	}
	return v.call(ctx, "set block I/O tune of "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		return l.DomainSetBlockIOTune(d, disk, ThrottleParams(t), flags)
	})
}

// DomainXML returns the live (or, with inactive, the persistent)
// definition.
func (v *Libvirt) DomainXML(ctx context.Context, domain string, inactive bool) (string, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return "", err
	}
	var flags libvirt.DomainXMLFlags
	if inactive {
		flags = libvirt.DomainXMLInactive
	}
	var xml string
	err = v.call(ctx, "get XML of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		xml, err = l.DomainGetXMLDesc(d, flags)
		return err
	})
	return xml, err
}

// DefineXML defines (or redefines) a persistent domain.
func (v *Libvirt) DefineXML(ctx context.Context, xml string) error {
	return v.call(ctx, "define domain", func(l *libvirt.Libvirt) error {
		_, err := l.DomainDefineXML(xml)
		return err
	})
}

// BlockPull streams a disk's backing chain into it (bandwidth bytes/s).
func (v *Libvirt) BlockPull(ctx context.Context, domain, disk string, bandwidth uint64) error {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return err
	}
	return v.call(ctx, "block pull "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		return l.DomainBlockPull(d, disk, bandwidth, libvirt.DomainBlockPullBandwidthBytes)
	})
}

// BlockPullTo streams the part of a disk's backing chain above base into
// it (libvirt's rebase onto base, bandwidth bytes/s); the disk then rests
// on base.
func (v *Libvirt) BlockPullTo(ctx context.Context, domain, disk, base string, bandwidth uint64) error {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return err
	}
	return v.call(ctx, "block rebase "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		return l.DomainBlockRebase(d, disk, libvirt.OptString{base}, bandwidth, libvirt.DomainBlockRebaseBandwidthBytes)
	})
}

// BlockCopy starts a copy of a disk to destXML (a <disk> element). A
// persistent domain needs the transient-job flag on libvirt 9.0, which is
// always set: the job does not survive a restart of the domain anyway.
func (v *Libvirt) BlockCopy(ctx context.Context, domain, disk, destXML string, bandwidth uint64, flags libvirt.DomainBlockCopyFlags) error {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return err
	}
	var params []libvirt.TypedParam
	if bandwidth > 0 {
		params = append(params, libvirt.TypedParam{Field: "bandwidth", Value: *libvirt.NewTypedParamValueUllong(bandwidth)})
	}
	return v.call(ctx, "block copy "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		return l.DomainBlockCopy(d, disk, destXML, params, flags|libvirt.DomainBlockCopyTransientJob)
	})
}

// BlockJobAbort cancels a disk's job; with pivot a ready copy switches to
// its destination instead.
func (v *Libvirt) BlockJobAbort(ctx context.Context, domain, disk string, pivot bool) error {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return err
	}
	var flags libvirt.DomainBlockJobAbortFlags
	if pivot {
		flags = libvirt.DomainBlockJobAbortPivot
	}
	return v.call(ctx, "block job abort "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		return l.DomainBlockJobAbort(d, disk, flags)
	})
}

// BlockJobSetSpeed changes the speed limit of a disk's block job, in
// bytes/s (0 = unlimited).
func (v *Libvirt) BlockJobSetSpeed(ctx context.Context, domain, disk string, speed uint64) error {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return err
	}
	return v.call(ctx, "block job set speed "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		return l.DomainBlockJobSetSpeed(d, disk, speed, libvirt.DomainBlockJobSpeedBandwidthBytes)
	})
}

// BlockJob is a disk's running job as libvirt reports it.
type BlockJob struct {
	Found     bool
	Type      int32
	Bandwidth uint64
	Cur, End  uint64
}

// BlockJobInfo reads a disk's job, if any.
func (v *Libvirt) BlockJobInfo(ctx context.Context, domain, disk string) (BlockJob, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return BlockJob{}, err
	}
	var j BlockJob
	err = v.call(ctx, "block job info "+domain+"/"+disk, func(l *libvirt.Libvirt) error {
		found, typ, bw, cur, end, err := l.DomainGetBlockJobInfo(d, disk, 0)
		j = BlockJob{Found: found == 1, Type: typ, Bandwidth: bw, Cur: cur, End: end}
		return err
	})
	return j, err
}
