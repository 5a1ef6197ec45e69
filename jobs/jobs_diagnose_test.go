package jobs

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/hoststat"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
	"github.com/qtune/qtune/virt"
)

// A failed copy's reason: the hypervisor's words, and what qtune finds at
// the target before removing it, named as qtune's finding.
func TestJobFailedCopyReason(t *testing.T) {
	for _, c := range []struct {
		name  string
		hvErr string // "" : the job vanishes
		fs    hoststat.FSInfo
		spoil func(dest string)
		cause string
		want  []string
	}{
		{name: "full under libvirt", hvErr: libvirtNoReason, fs: hoststat.FSInfo{Free: 0, Size: 4 << 20}, cause: CauseTargetFull,
			want: []string{"the job failed: " + libvirtNoReason + "; qtune found the target filesystem ", " full: 0 B free of 4.0 MiB, the copy needs 200.0 MiB"}},
		{name: "full under QMP", hvErr: "No space left on device", fs: hoststat.FSInfo{Free: 512, Size: 4 << 20}, cause: CauseTargetFull,
			want: []string{"the job failed: No space left on device; qtune found the target filesystem ", "full: 512 B free of 4.0 MiB"}},
		{name: "vanished while qtune was away", fs: hoststat.FSInfo{Size: 4 << 20}, cause: CauseTargetFull,
			want: []string{"the job vanished before its pivot", "qtune found the target filesystem"}},
		{name: "target gone", hvErr: libvirtNoReason, fs: hoststat.FSInfo{Free: 1 << 40}, spoil: func(d string) { os.Remove(d) }, cause: CauseTargetGone,
			want: []string{"qtune found the target ", " gone"}},
		{name: "target unreadable", hvErr: "Input/output error", fs: hoststat.FSInfo{Free: 1 << 40},
			spoil: func(d string) { os.Remove(d); os.Mkdir(d, 0o755) }, cause: CauseTargetUnreadable,
			want: []string{"the job failed: Input/output error; qtune found the target ", " unreadable: "}},
		{name: "read-only filesystem", hvErr: "Read-only file system", fs: hoststat.FSInfo{Free: 1 << 40, ReadOnly: true}, cause: CauseTargetReadOnly,
			want: []string{"qtune found the target filesystem ", " read-only"}},
		{name: "nothing found", hvErr: "Input/output error", fs: hoststat.FSInfo{Free: 1 << 40, Size: 2 << 40}, cause: CauseJobError,
			want: []string{"the job failed: Input/output error"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var statted string
			r := newJobRig(t, Options{StatFS: func(dir string) (hoststat.FSInfo, error) { statted = dir; return c.fs, nil }})
			j := r.mustPlan(mirrorReq(r.fast()))
			j = r.step(j.ID)
			if c.spoil != nil {
				c.spoil(j.Dest)
			}
			r.f.mu.Lock()
			if c.hvErr == "" {
				delete(r.f.jobs, j.ID)
			} else {
				r.f.jobs[j.ID].Status, r.f.jobs[j.ID].Error = "concluded", c.hvErr
			}
			r.f.mu.Unlock()
			j = r.step(j.ID)
			r.expect(j, state.JobFailed)
			for _, w := range c.want {
				if !strings.Contains(j.Error, w) {
					t.Errorf("error %q lacks %q", j.Error, w)
				}
			}
			if j.Cause != c.cause {
				t.Errorf("cause %q, want %q", j.Cause, c.cause)
			}
			if c.spoil == nil && statted != r.fast() {
				t.Errorf("statfs of %q, want the target directory %s", statted, r.fast())
			}
			if c.cause != CauseTargetUnreadable {
				if _, err := os.Stat(j.Dest); !os.IsNotExist(err) {
					t.Errorf("target left after the failure: %v", err)
				}
			}
			recs, _ := r.store.Records(1)
			if len(recs) != 1 || recs[0].Reason != j.Error {
				t.Errorf("decision log says %+v, the job %q", recs, j.Error)
			}
		})
	}
}

// libvirt's failure as the backend reports it: QEMU's error when its
// event came (before or without libvirt's), a moment's wait for it, else
// failed without a reason, or gone.
func TestLibvirtJobFailureReason(t *testing.T) {
	b := NewLibvirtDriver(tuning.NewLibvirtBackend(nil, tuning.LibvirtBackendOptions{}), DriverOptions{})
	disk := func(dev, path string) (HVJob, bool) {
		return b.endedJob("vm1", virt.DomainDisk{Target: dev, Source: path})
	}
	if _, ok := disk("vda", "/a.qcow2"); ok {
		t.Fatal("a disk never seen with a job, without a failure event, is reported")
	}
	b.watches["vm1"] = &jobWatch{cancel: func() {}, errs: map[string]string{}, live: map[string]bool{"vda": true, "vdb": true}, gone: map[string]time.Time{}}
	// libvirt dismissed the job and has not sent its event yet.
	if h, ok := disk("vda", "/a.qcow2"); !ok || h.Status != "aborting" || h.Error != "" {
		t.Fatalf("a job just gone: %+v %v", h, ok)
	}
	b.NoteJobEvent("vm1", "/a.qcow2", libvirtJobFailed)
	if h, ok := disk("vda", "/a.qcow2"); !ok || h.Status != "aborting" || h.Error != "" {
		t.Fatalf("a fresh failure, QEMU's event not yet in: %+v %v", h, ok)
	}
	b.noteJobError("vm1", "copy-vda-libvirt-1-format", "No space left on device")
	if h, ok := disk("vda", "/a.qcow2"); !ok || h.Status != "concluded" || h.Error != "No space left on device" {
		t.Fatalf("with QEMU's event: %+v %v", h, ok)
	}
	// QEMU's event alone is enough.
	b.noteJobError("vm1", "pull-vdb-libvirt-2-format", "Input/output error")
	if h, ok := disk("vdb", "/b.qcow2"); !ok || h.Error != "Input/output error" {
		t.Fatalf("QEMU's event before libvirt's: %+v %v", h, ok)
	}
	later := time.Now().Add(2 * errorGrace)
	b.NoteJobEvent("vm1", "/c.qcow2", libvirtJobFailed)
	b.watches["vm1"].live["vdc"] = true
	b.failure("vm1", "vdc", "/c.qcow2", time.Now())
	if failed, msg, wait := b.failure("vm1", "vdc", "/c.qcow2", later); !failed || msg != "" || wait {
		t.Fatalf("failed without QEMU's event, after the grace: %v %q %v", failed, msg, wait)
	}
	b.watches["vm1"].live["vdd"] = true
	b.failure("vm1", "vdd", "/d.qcow2", time.Now())
	if failed, _, wait := b.failure("vm1", "vdd", "/d.qcow2", later); failed || wait {
		t.Fatalf("gone without a word, after the grace: failed %v, wait %v", failed, wait)
	}
	for _, d := range []string{"vda", "vdb", "vdc", "vdd"} {
		b.jobDone("vm1", d)
	}
	if _, watched := b.watches["vm1"]; watched {
		t.Error("the domain's events are still followed after its last job")
	}
	b.NoteJobEvent("vm1", "/e.qcow2", libvirtJobFailed)
	if h, _ := disk("vde", "/e.qcow2"); h.Error != libvirtNoReason {
		t.Fatalf("not followed: %+v", h)
	}
	for id, want := range map[string]string{"copy-vda-libvirt-1-format": "vda", "pull-sdb-libvirt-3-format": "sdb",
		"active-commit-vdc-libvirt-5-format": "vdc", "qtune-mirror-x": ""} {
		if got := libvirtJobDisk(id); got != want {
			t.Errorf("disk of %s: %q, want %q", id, got, want)
		}
	}
}
