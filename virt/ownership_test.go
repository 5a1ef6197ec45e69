package virt

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
)

func sampleOwnership() Ownership {
	at := time.Date(2026, 12, 7, 19, 50, 0, 123456789, time.UTC)
	return Ownership{
		Knobs: []OwnedKnob{
			{Disk: "vda", Kind: "throttle", Rule: "calm-loud", Original: json.RawMessage(`{"iops_wr":0}`),
				Set: json.RawMessage(`{"iops_wr":256}`), Host: "hv1", SetAt: at, Seq: 7},
			{Disk: "vdb", Kind: "cache_mode", Rule: "fast-scratch", Original: json.RawMessage(`"none"`),
				Set: json.RawMessage(`"unsafe"`), Persisted: true, Host: "hv2", SetAt: at.Add(time.Second), Seq: 8},
		},
		Jobs: []CopyJob{{ID: "j3", Kind: "mirror", Disk: "vda", Source: "/a.qcow2", Target: "/b & c.qcow2", Host: "hv1", Since: at}},
	}
}

func TestOwnershipRoundTrip(t *testing.T) {
	o := sampleOwnership()
	doc, err := o.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc, `xmlns="`+OwnershipNamespace+`"`) || !strings.Contains(doc, `version="1"`) {
		t.Errorf("encoded: %s", doc)
	}
	back, err := DecodeOwnership("t1", doc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, o) {
		t.Errorf("round trip:\n got %+v\nwant %+v\n%s", back, o, doc)
	}
	if empty, err := DecodeOwnership("t1", "  "); err != nil || !empty.Empty() {
		t.Errorf("no metadata: %+v %v", empty, err)
	}
}

// What DomainGetMetadata hands back (libvirt 9.0): no namespace at all.
func TestOwnershipAsLibvirtReturnsIt(t *testing.T) {
	doc := `<ownership version="1">
  <knob disk="vda" kind="throttle" rule="r" seq="1" persisted="no"><original>{}</original><set>{"iops_wr":5}</set></knob>
</ownership>`
	o, err := DecodeOwnership("t1", doc)
	if err != nil || len(o.Knobs) != 1 || string(o.Knobs[0].Set) != `{"iops_wr":5}` {
		t.Fatalf("%+v %v", o, err)
	}
}

// The root under a prefix, as the domain XML shows it.
func TestOwnershipAsLibvirtStoresIt(t *testing.T) {
	doc := `<qtune:ownership xmlns:qtune="` + OwnershipNamespace + `" version="1">
  <qtune:knob disk="vda" kind="throttle" rule="r" seq="1" persisted="no"><qtune:original>{}</qtune:original><qtune:set>{"iops_wr":5}</qtune:set></qtune:knob>
  <qtune:lease xmlns:o="urn:o"><qtune:why>m</qtune:why><o:x/></qtune:lease>
</qtune:ownership>`
	o, err := DecodeOwnership("t1", doc)
	if err != nil || len(o.Knobs) != 1 || string(o.Knobs[0].Set) != `{"iops_wr":5}` {
		t.Fatalf("%+v %v", o, err)
	}
	// The kept element survives rewrites, without prefixes that would
	// need a declaration elsewhere.
	first, err := o.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeOwnership("t1", first)
	if err != nil {
		t.Fatalf("%v\n%s", err, first)
	}
	second, _ := again.Encode()
	// (encoding/xml does not check prefixes; libvirt's parser does.)
	if strings.Contains(first, "qtune:") || strings.Contains(first, "o:x") {
		t.Errorf("prefixes in %s", first)
	}
	if first != second || !strings.Contains(first, `<why xmlns="`+OwnershipNamespace+`">m</why><x xmlns="urn:o"></x>`) {
		t.Errorf("rewrites differ or lost the kept element:\n%s\n%s", first, second)
	}
}

// Unknown elements and root attributes survive a rewrite; a newer
// version is refused.
func TestOwnershipUnknownAndVersions(t *testing.T) {
	doc := `<ownership xmlns="` + OwnershipNamespace + `" version="1" writer="qtune-2.1">
  <knob disk="vda" kind="throttle" rule="r" seq="1" colour="blue"><original>{}</original><set>{}</set><note>x</note></knob>
  <lease holder="hv9" until="2027-01-01T00:00:00Z"><why>maintenance</why></lease>
</ownership>`
	o, err := DecodeOwnership("t1", doc)
	if err != nil || len(o.Knobs) != 1 {
		t.Fatalf("%+v %v", o, err)
	}
	o.Knobs[0].Seq = 2
	out, err := o.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, kept := range []string{`writer="qtune-2.1"`, `<lease`, `holder="hv9"`, `>maintenance</why>`} {
		if !strings.Contains(out, kept) {
			t.Errorf("rewrite lost %s: %s", kept, out)
		}
	}
	if strings.Contains(out, "colour") || strings.Contains(out, "<note>") {
		t.Errorf("a record's unknown parts were kept: %s", out)
	}
	again, err := DecodeOwnership("t1", out)
	if err != nil || again.Knobs[0].Seq != 2 || len(again.unknown) != 1 {
		t.Errorf("reread: %+v %v", again, err)
	}
	newer := strings.Replace(doc, `version="1"`, `version="2"`, 1)
	if _, err := DecodeOwnership("t1", newer); !errors.Is(err, ErrOwnershipVersion) {
		t.Errorf("version 2: %v", err)
	}
}

func TestOwnershipBadInput(t *testing.T) {
	head := `<ownership xmlns="` + OwnershipNamespace + `" version="1">`
	cases := []struct{ name, doc, want string }{
		{"not XML", `<ownership version="1"><knob`, "domain web-7: qtune metadata"},
		{"no version", `<ownership xmlns="` + OwnershipNamespace + `"></ownership>`, `version "" is not a number`},
		{"other namespace", `<ownership xmlns="urn:else" version="1"/>`, `urn:else`},
		{"other element", `<owner version="1"/>`, `<owner>`},
		{"knob without disk", head + `<knob kind="throttle"/></ownership>`, "knob 1"},
		{"bad JSON", head + `<knob disk="vda" kind="throttle"><original>{iops</original></knob></ownership>`, "original is not JSON"},
		{"bad time", head + `<knob disk="vda" kind="throttle" set_at="yesterday"/></ownership>`, "set_at"},
		{"bad persisted", head + `<knob disk="vda" kind="throttle" persisted="maybe"/></ownership>`, `persisted "maybe"`},
		{"job without id", head + `<job disk="vda"/></ownership>`, "job 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeOwnership("web-7", c.doc)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "web-7") {
				t.Errorf("error %v, want one naming web-7 and %q", err, c.want)
			}
		})
	}
	bad := Ownership{Knobs: []OwnedKnob{{Disk: "vda", Kind: "throttle", Set: json.RawMessage("{")}}}
	if _, err := bad.Encode(); err == nil {
		t.Error("encoded a value that is not JSON")
	}
}

func TestParseDomainOwnership(t *testing.T) {
	meta, _ := sampleOwnership().Encode()
	doc := `<domain type='qemu'><name>t1</name><metadata><other:x xmlns:other="urn:other"/>` + meta + `</metadata>
<devices><disk type='file' device='disk'><target dev='vda'/></disk></devices></domain>`
	o, found, err := ParseDomainOwnership("t1", doc)
	if err != nil || !found || !reflect.DeepEqual(o, sampleOwnership()) {
		t.Fatalf("%+v %v %v", o, found, err)
	}
	for _, none := range []string{`<domain><name>t1</name></domain>`, `<domain><metadata><ownership xmlns="urn:other" version="1"/></metadata></domain>`} {
		if _, found, err := ParseDomainOwnership("t1", none); found || err != nil {
			t.Errorf("%s: found %v, %v", none, found, err)
		}
	}
	f, _ := reflect.TypeOf(xmlDomainMetadata{}.Metadata).FieldByName("Ownership")
	if tag := f.Tag.Get("xml"); tag != OwnershipNamespace+" ownership" {
		t.Errorf("tag %q does not name OwnershipNamespace", tag)
	}
}

func TestMigrationPhases(t *testing.T) {
	lc := func(ev libvirt.DomainEventType, detail int32) DomainEvent {
		return DomainEvent{Domain: "t1", Kind: "lifecycle", Event: int32(ev), Detail: detail}
	}
	cases := []struct {
		ev   DomainEvent
		want MigrationPhase
	}{
		{lc(libvirt.DomainEventStopped, int32(libvirt.DomainEventStoppedMigrated)), MigrationOut},
		{lc(libvirt.DomainEventStopped, int32(libvirt.DomainEventStoppedDestroyed)), MigrationNone},
		{lc(libvirt.DomainEventStarted, int32(libvirt.DomainEventStartedMigrated)), MigrationIn},
		{lc(libvirt.DomainEventStarted, int32(libvirt.DomainEventStartedBooted)), MigrationNone},
		{lc(libvirt.DomainEventSuspended, int32(libvirt.DomainEventSuspendedMigrated)), MigrationSuspended},
		{lc(libvirt.DomainEventResumed, int32(libvirt.DomainEventResumedMigrated)), MigrationResumed},
		{lc(libvirt.DomainEventResumed, int32(libvirt.DomainEventResumedUnpaused)), MigrationNone},
		{DomainEvent{Kind: "block-job", Event: 5, Detail: 3}, MigrationNone},
	}
	for i, c := range cases {
		if got := c.ev.Migration(); got != c.want {
			t.Errorf("case %d %+v: %q, want %q", i, c.ev, got, c.want)
		}
	}
}

func TestDecodeJobStats(t *testing.T) {
	j := DecodeJobStats(int32(libvirt.DomainJobUnbounded), []libvirt.TypedParam{
		{Field: "operation", Value: *libvirt.NewTypedParamValueInt(int32(libvirt.DomainJobOperationStrMigrationOut))},
		{Field: "time_elapsed", Value: *libvirt.NewTypedParamValueUllong(1500)},
		{Field: "data_remaining", Value: *libvirt.NewTypedParamValueUllong(4096)},
	})
	if !j.Migrating() || j.Elapsed != 1500*time.Millisecond || j.DataRemaining != 4096 {
		t.Errorf("%+v", j)
	}
	if none := DecodeJobStats(int32(libvirt.DomainJobNone), nil); none.Active() || none.Migrating() || none.Type != "none" {
		t.Errorf("%+v", none)
	}
	done := DecodeJobStats(int32(libvirt.DomainJobCompleted), []libvirt.TypedParam{
		{Field: "operation", Value: *libvirt.NewTypedParamValueInt(int32(libvirt.DomainJobOperationStrMigrationOut))}})
	if done.Migrating() {
		t.Errorf("a completed migration job counts as migrating: %+v", done)
	}
}
