package virt

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
)

func TestPassthroughReplyErrorInBody(t *testing.T) {
	_, err := decodePassthroughReply("blockdev-reopen", []byte(`{"id":"libvirt-42","error":{"class":"GenericError","desc":"Cannot change the option 'aio'"}}`))
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Class != "GenericError" || qe.Command != "blockdev-reopen" || !strings.Contains(qe.Desc, "aio") {
		t.Fatalf("err = %#v", err)
	}
	ret, err := decodePassthroughReply("query-name", []byte(`{"return":{"name":"t1"},"id":"libvirt-43"}`))
	if err != nil || string(ret) != `{"name":"t1"}` {
		t.Fatalf("ret %s err %v", ret, err)
	}
	if _, err := decodePassthroughReply("x", []byte(`garbage`)); err == nil {
		t.Fatal("garbage accepted")
	}
}

func param(name string, v any) libvirt.TypedParam {
	switch x := v.(type) {
	case string:
		return libvirt.TypedParam{Field: name, Value: *libvirt.NewTypedParamValueString(x)}
	case uint32:
		return libvirt.TypedParam{Field: name, Value: *libvirt.NewTypedParamValueUint(x)}
	case int64:
		return libvirt.TypedParam{Field: name, Value: *libvirt.NewTypedParamValueLlong(x)}
	case float64:
		return libvirt.TypedParam{Field: name, Value: *libvirt.NewTypedParamValueDouble(x)}
	default:
		return libvirt.TypedParam{Field: name, Value: *libvirt.NewTypedParamValueUllong(v.(uint64))}
	}
}

func TestDecodeBlockStats(t *testing.T) {
	at := time.Unix(100, 0)
	params := []libvirt.TypedParam{
		param("block.count", uint32(2)),
		param("block.0.name", "vda"), param("block.0.path", "/img/a.qcow2"),
		param("block.0.rd.reqs", uint64(10)), param("block.0.rd.bytes", uint64(40960)), param("block.0.rd.times", uint64(5000)),
		param("block.0.wr.reqs", uint64(20)), param("block.0.wr.bytes", uint64(81920)), param("block.0.wr.times", uint64(9000)),
		param("block.0.fl.reqs", uint64(3)), param("block.0.fl.times", uint64(700)),
		param("block.0.allocation", uint64(1<<20)), param("block.0.capacity", uint64(64<<20)),
		param("block.1.name", "vdb"), param("block.1.path", "/img/b.raw"),
	}
	disks := DecodeBlockStats("t1", params, at)
	if len(disks) != 2 {
		t.Fatalf("%d disks", len(disks))
	}
	want := sample.Disk{VM: "t1", Name: "vda", Path: "/img/a.qcow2", Time: at, VirtualSize: 64 << 20, Allocation: 1 << 20,
		Counters: sample.Counters{ReadOps: 10, ReadBytes: 40960, ReadTimeNs: 5000, WriteOps: 20, WriteBytes: 81920, WriteTimeNs: 9000, FlushOps: 3, FlushTimeNs: 700}}
	if !reflect.DeepEqual(disks[0], want) {
		t.Errorf("vda:\n got %+v\nwant %+v", disks[0], want)
	}
	if disks[1].Name != "vdb" || disks[1].WriteOps != 0 {
		t.Errorf("vdb: %+v", disks[1])
	}
}

// DomainBlockStatsFlags sends llong values under its own names, -1 for
// a counter the hypervisor does not keep.
func TestDecodeDiskStats(t *testing.T) {
	at := time.Unix(100, 0)
	params := []libvirt.TypedParam{
		param("rd_operations", int64(10)), param("rd_bytes", int64(40960)), param("rd_total_times", int64(5000)),
		param("wr_operations", int64(20)), param("wr_bytes", int64(81920)), param("wr_total_times", int64(9000)),
		param("flush_operations", int64(3)), param("flush_total_times", int64(-1)), param("errs", int64(-1)),
	}
	got := DecodeDiskStats("t1", "vda", params, at)
	want := sample.Disk{VM: "t1", Name: "vda", Time: at,
		Counters: sample.Counters{ReadOps: 10, ReadBytes: 40960, ReadTimeNs: 5000, WriteOps: 20, WriteBytes: 81920, WriteTimeNs: 9000, FlushOps: 3}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
}

func TestThrottleParamsRoundTrip(t *testing.T) {
	in := sample.Throttle{IOPSWrite: 500, IOPSWriteMax: 800, IOPSWriteMaxLen: 10, BPSRead: 1 << 20, IOPSSize: 4096, Group: "tenant-a"}
	params := ThrottleParams(in)
	if len(params) != len(iotuneFields)+1 {
		t.Fatalf("%d params: every field is sent so that zeros clear old limits", len(params))
	}
	for _, p := range params[:len(iotuneFields)] {
		if _, ok := p.Value.I.(uint64); !ok {
			t.Errorf("%s sent as %T, libvirt wants ullong", p.Field, p.Value.I)
		}
	}
	if out := ThrottleFromParams(params); out != in {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestParseDomainDisks(t *testing.T) {
	doc := `<domain type='qemu'><name>t1</name><devices>
  <disk type='file' device='disk'>
    <driver name='qemu' type='qcow2' cache='none'><metadata_cache><max_size unit='MiB'>8</max_size></metadata_cache></driver>
    <source file='/img/top.qcow2' index='3'/>
    <backingStore type='file' index='2'><format type='qcow2'/><source file='/img/mid.qcow2'/>
      <backingStore type='file' index='1'><format type='qcow2'/><source file='/img/base.qcow2'/><backingStore/></backingStore>
    </backingStore>
    <target dev='vda' bus='virtio'/><alias name='virtio-disk0'/>
  </disk>
  <disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>
</devices></domain>`
	disks, err := ParseDomainDisks(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 1 {
		t.Fatalf("%+v", disks)
	}
	d := disks[0]
	if d.Target != "vda" || d.Format != "qcow2" || d.BackingDepth != 2 || d.MetadataCacheMax != 8<<20 ||
		d.QOMPath() != "/machine/peripheral/virtio-disk0/virtio-backend" {
		t.Errorf("%+v", d)
	}
	if direct, noFlush := d.CacheFlags(); !direct || noFlush {
		t.Errorf("cache none -> direct %v no-flush %v", direct, noFlush)
	}
	if _, err := ParseDomainDisks("<domain"); err == nil {
		t.Error("broken XML accepted")
	}
}

func TestDialLibvirtErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libvirt-sock")
	_, err := DialLibvirt(context.Background(), LibvirtOptions{Socket: missing})
	if !errors.Is(err, ErrLibvirtDown) || !strings.Contains(err.Error(), "libvirtd is not running") || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
	// A daemon that accepts and never answers: the dial returns at its deadline.
	silent := filepath.Join(t.TempDir(), "silent-sock")
	ln, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = DialLibvirt(ctx, LibvirtOptions{Socket: silent})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent daemon: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dial took %v despite a 300ms deadline", d)
	}
}
