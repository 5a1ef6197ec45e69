package virt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/sample"
)

func TestParseDomainDisksIOTune(t *testing.T) {
	doc := `<domain><devices>
  <disk type='file' device='disk'><driver type='qcow2'/><source file='/img/a.qcow2'/><target dev='vda'/>
    <iotune><write_iops_sec>150</write_iops_sec><write_iops_sec_max>300</write_iops_sec_max><group_name>tenant-a</group_name></iotune>
  </disk>
  <disk type='file' device='disk'><driver type='raw'/><source file='/img/b.raw'/><target dev='vdb'/>
    <iotune><total_bytes_sec>1048576</total_bytes_sec><group_name>drive-virtio-disk1</group_name></iotune>
  </disk>
  <disk type='file' device='disk'><driver type='raw'/><source file='/img/c.raw'/><target dev='vdc'/></disk>
</devices></domain>`
	disks, err := ParseDomainDisks(doc)
	if err != nil || len(disks) != 3 {
		t.Fatalf("%+v %v", disks, err)
	}
	want := []sample.Throttle{{IOPSWrite: 150, IOPSWriteMax: 300, Group: "tenant-a"}, {BPS: 1 << 20}, {}}
	for i, w := range want {
		if disks[i].Throttle != w {
			t.Errorf("%s: throttle %+v, want %+v", disks[i].Target, disks[i].Throttle, w)
		}
	}
	bad := `<domain><devices><disk device='disk'><target dev='vda'/><iotune><read_iops_sec>lots</read_iops_sec></iotune></disk></devices></domain>`
	if _, err := ParseDomainDisks(bad); err == nil || !errorsContain(err, "vda", "read_iops_sec", "lots") {
		t.Errorf("bad iotune: %v", err)
	}
}

func errorsContain(err error, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			return false
		}
	}
	return true
}

func TestDecodeDomainStatsState(t *testing.T) {
	at := time.Unix(5, 0)
	params := []libvirt.TypedParam{
		{Field: "state.state", Value: *libvirt.NewTypedParamValueInt(int32(libvirt.DomainPaused))},
		{Field: "state.reason", Value: *libvirt.NewTypedParamValueInt(int32(libvirt.DomainPausedIoerror))},
		param("block.count", uint32(1)), param("block.0.name", "vda"), param("block.0.wr.reqs", uint64(7)),
	}
	st := DecodeDomainStats("t1", params, at)
	if st.State != "paused" || st.Reason != "ioerror" || len(st.Disks) != 1 || st.Disks[0].WriteOps != 7 {
		t.Errorf("%+v", st)
	}
	running := DecodeDomainStats("t2", []libvirt.TypedParam{
		{Field: "state.state", Value: *libvirt.NewTypedParamValueInt(int32(libvirt.DomainRunning))},
		{Field: "state.reason", Value: *libvirt.NewTypedParamValueInt(int32(libvirt.DomainRunningUnpaused))},
	}, at)
	if running.State != "running" || running.Reason != "unpaused" || len(running.Disks) != 0 {
		t.Errorf("%+v", running)
	}
	if none := DecodeDomainStats("t3", nil, at); none.State != "" {
		t.Errorf("no state fields: %+v", none)
	}
}

func TestDomainEventTranslation(t *testing.T) {
	dom := libvirt.Domain{Name: "t1"}
	cases := []struct {
		raw  any
		want DomainEvent
		ok   bool
	}{
		{&libvirt.DomainEventCallbackTunableMsg{Dom: dom, Params: []libvirt.TypedParam{
			{Field: "blkdeviotune.disk", Value: *libvirt.NewTypedParamValueString("vda")},
			{Field: "blkdeviotune.write_iops_sec", Value: *libvirt.NewTypedParamValueUllong(300)}}},
			DomainEvent{Domain: "t1", Kind: "tunable", Disk: "vda"}, true},
		{&libvirt.DomainEventCallbackTunableMsg{Dom: dom, Params: []libvirt.TypedParam{
			{Field: "cputune.vcpupin0", Value: *libvirt.NewTypedParamValueString("0-1")}}}, DomainEvent{}, false},
		{&libvirt.DomainEventCallbackDeviceAddedMsg{Dom: dom, DevAlias: "virtio-disk1"},
			DomainEvent{Domain: "t1", Kind: "device-added", Disk: "virtio-disk1"}, true},
		{&libvirt.DomainEventCallbackDeviceRemovedMsg{Msg: libvirt.DomainEventDeviceRemovedMsg{Dom: dom, DevAlias: "virtio-disk1"}},
			DomainEvent{Domain: "t1", Kind: "device-removed", Disk: "virtio-disk1"}, true},
		{&libvirt.DomainEventCallbackLifecycleMsg{Msg: libvirt.DomainEventLifecycleMsg{Dom: dom, Event: 3, Detail: 1}},
			DomainEvent{Domain: "t1", Kind: "lifecycle", Event: 3, Detail: 1}, true},
		{&libvirt.DomainEventCallbackMetadataChangeMsg{Dom: dom, Type: int32(libvirt.DomainMetadataElement), Nsuri: libvirt.OptString{OwnershipNamespace}},
			DomainEvent{Domain: "t1", Kind: "records"}, true},
		{&libvirt.DomainEventCallbackMetadataChangeMsg{Dom: dom, Type: int32(libvirt.DomainMetadataElement), Nsuri: libvirt.OptString{"https://example.org/other"}},
			DomainEvent{}, false},
		{&libvirt.DomainEventCallbackMetadataChangeMsg{Dom: dom, Type: int32(libvirt.DomainMetadataTitle)}, DomainEvent{}, false},
	}
	for i, c := range cases {
		got, ok := domainEvent(c.raw)
		if ok != c.ok || got != c.want {
			t.Errorf("case %d: %+v %v, want %+v %v", i, got, ok, c.want, c.ok)
		}
	}
}

// fakeWedge is a connection whose calls hang until released, with a
// probe that answers or not.
func fakeWedge(probeAnswers bool) (*Libvirt, *libvirt.Libvirt, *atomic.Int32, chan struct{}) {
	conn := &libvirt.Libvirt{}
	release := make(chan struct{})
	var drops atomic.Int32
	v := &Libvirt{opts: LibvirtOptions{Socket: "test-sock", CallTimeout: 100 * time.Millisecond}, log: hclog.NewNullLogger(),
		closed: make(chan struct{}), conn: conn}
	v.probe = func(*libvirt.Libvirt) error {
		if !probeAnswers {
			<-release
		}
		return nil
	}
	v.drop = func(c *libvirt.Libvirt) {
		drops.Add(1)
		v.mu.Lock()
		v.conn = nil
		v.mu.Unlock()
	}
	return v, conn, &drops, release
}

func TestSlowCallIsNotALostConnection(t *testing.T) {
	v, _, drops, release := fakeWedge(true)
	defer close(release)
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := v.call(ctx, "get XML of slow-domain", func(*libvirt.Libvirt) error { <-release; return nil })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v", i, err)
		}
		waitProbeDone(t, v)
	}
	if drops.Load() != 0 || !v.Connected() {
		t.Errorf("five slow calls with a daemon that answers its probe dropped the connection (%d drops)", drops.Load())
	}
}

func TestWedgedDaemonIsDropped(t *testing.T) {
	v, _, drops, release := fakeWedge(false)
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	v.call(ctx, "get all domain stats", func(*libvirt.Libvirt) error { <-release; return nil })
	deadline := time.Now().Add(5 * time.Second)
	for drops.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if drops.Load() != 1 || v.Connected() {
		t.Errorf("a daemon that does not answer its probe: %d drops, connected %v", drops.Load(), v.Connected())
	}
}

func waitProbeDone(t *testing.T, v *Libvirt) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		p := v.probing
		v.mu.Unlock()
		if !p {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("probe never finished")
}

// xdrString is s as XDR: length, bytes, padding to 4.
func xdrString(s string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(s)))
	b = append(b, s...)
	return append(b, make([]byte, (4-len(s)%4)%4)...)
}

func rpcMessage(program, proc uint32, body []byte) []byte {
	be := binary.BigEndian
	b := be.AppendUint32(nil, uint32(rpcHeaderLen+len(body)))
	for _, w := range []uint32{program, 1, proc, 2, 0, 0} {
		b = be.AppendUint32(b, w)
	}
	return append(b, body...)
}

func tunableBody(dom, disk string) []byte {
	be := binary.BigEndian
	b := be.AppendUint32(nil, 7) // callback id
	b = append(b, xdrString(dom)...)
	b = append(b, make([]byte, 16)...) // uuid
	b = be.AppendUint32(b, 1)          // id
	b = be.AppendUint32(b, 2)          // two params
	b = append(b, xdrString("blkdeviotune.write_iops_sec")...)
	b = be.AppendUint32(b, 4)
	b = be.AppendUint64(b, 300)
	b = append(b, xdrString("blkdeviotune.disk")...)
	b = be.AppendUint32(b, 7)
	return append(b, xdrString(disk)...)
}

// The tap finds tunable events in the byte stream however it is cut,
// and passes everything else by.
func TestTapFindsTunableEvents(t *testing.T) {
	var stream []byte
	stream = append(stream, rpcMessage(rpcRemoteProgram, 1, bytes.Repeat([]byte{0xee}, 37*4))...) // a reply
	stream = append(stream, rpcMessage(rpcRemoteProgram, procCallbackTunable, tunableBody("tenant-a", "vda"))...)
	stream = append(stream, rpcMessage(0x20008087, procCallbackTunable, tunableBody("qemu-program", "vdx"))...)
	stream = append(stream, rpcMessage(rpcRemoteProgram, 2, nil)...)
	stream = append(stream, rpcMessage(rpcRemoteProgram, procCallbackTunable, tunableBody("b", "sdb"))...)
	for _, chunk := range []int{1, 3, 7, 64, len(stream)} {
		var got []string
		c := &tapConn{tunable: func(dom, disk string) { got = append(got, dom+"/"+disk) }}
		for b := stream; len(b) > 0; {
			k := min(chunk, len(b))
			c.feed(b[:k])
			b = b[k:]
		}
		if strings.Join(got, " ") != "tenant-a/vda b/sdb" {
			t.Errorf("chunks of %d: %v", chunk, got)
		}
	}
	if _, _, err := decodeTunable(tunableBody("x", "")[:20]); err == nil {
		t.Error("a cut message decoded")
	}
}
