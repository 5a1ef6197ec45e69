package virt

import "testing"

func TestBlockJobError(t *testing.T) {
	for _, c := range []struct {
		name, details, job, msg string
		ok                      bool
	}{
		// As virsh qemu-monitor-event showed it for a copy onto a full tmpfs.
		{"BLOCK_JOB_COMPLETED", `{"device":"copy-vda-libvirt-1-format","len":67108864,"offset":12124160,"speed":0,"type":"mirror","error":"No space left on device"}`,
			"copy-vda-libvirt-1-format", "No space left on device", true},
		{"BLOCK_JOB_COMPLETED", `{"event":"BLOCK_JOB_COMPLETED","data":{"device":"pull-vdb-libvirt-3-format","type":"stream","error":"Input/output error"}}`,
			"pull-vdb-libvirt-3-format", "Input/output error", true},
		{"BLOCK_JOB_COMPLETED", `{"device":"copy-vda-libvirt-1-format","len":1,"offset":1,"type":"mirror"}`, "", "", false},
		{"BLOCK_JOB_ERROR", `{"device":"copy-vda-libvirt-1-format","operation":"write","action":"report"}`, "", "", false},
		{"BLOCK_JOB_COMPLETED", `not json`, "", "", false},
	} {
		job, msg, ok := BlockJobError(c.name, []byte(c.details))
		if job != c.job || msg != c.msg || ok != c.ok {
			t.Errorf("%s %s: %q %q %v", c.name, c.details, job, msg, ok)
		}
	}
}
