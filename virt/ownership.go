package virt

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// qtune keeps the records of what it changed on a libvirt domain in the
// domain's own metadata, so that they travel with the domain when it is
// live-migrated. One element, in qtune's namespace under the key "qtune":
//
//	<ownership xmlns="https://github.com/qtune/qtune/xmlns/ownership" version="1">
//	  <knob disk="vda" kind="throttle" rule="calm-loud" seq="7" host="hv1"
//	        set_at="2026-12-07T19:50:00Z" persisted="no">
//	    <original>{"iops_wr":0}</original>
//	    <set>{"iops_wr":256}</set>
//	  </knob>
//	  <job id="j3" kind="mirror" disk="vda" source="/a.qcow2" target="/b.qcow2"
//	       host="hv1" since="2026-12-07T19:51:00Z"/>
//	</ownership>
//
// Compatibility rule: a document of a newer version than this qtune's is
// refused (ErrOwnershipVersion) rather than half-read, since the records
// decide what is released to which value. Within a version, elements and
// root attributes this qtune does not know are kept and written back as
// they were (another qtune may have added them); unknown attributes and
// children inside a knob or job are ignored, because whoever changes a
// record rewrites it whole.

const (
	// OwnershipNamespace is the XML namespace of qtune's domain metadata.
	// The tag of xmlDomainMetadata.Ownership repeats it.
	OwnershipNamespace = "https://github.com/qtune/qtune/xmlns/ownership"
	// OwnershipKey is the prefix libvirt gives the namespace.
	OwnershipKey = "qtune"
	// OwnershipVersion is the version this qtune writes and reads.
	OwnershipVersion = 1
)

// ErrOwnershipVersion is returned for metadata written by a newer qtune.
var ErrOwnershipVersion = errors.New("qtune metadata of a newer version")

// Ownership is what a domain's qtune metadata says qtune owns on it.
type Ownership struct {
	Knobs []OwnedKnob
	Jobs  []CopyJob
	// unknown keeps what this version does not know, to write it back.
	unknown      []xmlRaw
	unknownAttrs []xml.Attr
}

// Empty reports whether the metadata records nothing.
func (o Ownership) Empty() bool {
	return len(o.Knobs) == 0 && len(o.Jobs) == 0 && len(o.unknown) == 0
}

// OwnedKnob is one knob qtune set on a disk of the domain.
type OwnedKnob struct {
	Disk string // target, e.g. vda
	Kind string // throttle, cache_mode, l2_cache, ...
	Rule string // the rule that set it
	// Original is the value before qtune changed it, as the owner's JSON.
	Original json.RawMessage
	// Set is the value qtune set, as the owner's JSON.
	Set       json.RawMessage
	Persisted bool // the change is in the persistent definition too
	Host      string
	SetAt     time.Time
	Seq       uint64 // orders the records of one domain
}

// CopyJob is a block job qtune runs on the domain.
type CopyJob struct {
	ID, Kind, Disk string
	Source, Target string
	Host           string
	Since          time.Time
}

type xmlOwnership struct {
	// No tag: DomainGetMetadata hands the element back without its
	// namespace, the domain XML with it; decode checks the name.
	XMLName xml.Name
	Version string     `xml:"version,attr"`
	Attrs   []xml.Attr `xml:",any,attr"`
	Knobs   []xmlKnob  `xml:"knob"`
	Jobs    []xmlJob   `xml:"job"`
	Other   []xmlRaw   `xml:",any"`
}

type xmlKnob struct {
	Disk      string `xml:"disk,attr"`
	Kind      string `xml:"kind,attr"`
	Rule      string `xml:"rule,attr"`
	Seq       uint64 `xml:"seq,attr"`
	Host      string `xml:"host,attr,omitempty"`
	SetAt     string `xml:"set_at,attr,omitempty"`
	Persisted string `xml:"persisted,attr"`
	Original  string `xml:"original"`
	Set       string `xml:"set"`
}

type xmlJob struct {
	ID     string `xml:"id,attr"`
	Kind   string `xml:"kind,attr"`
	Disk   string `xml:"disk,attr"`
	Source string `xml:"source,attr,omitempty"`
	Target string `xml:"target,attr,omitempty"`
	Host   string `xml:"host,attr,omitempty"`
	Since  string `xml:"since,attr,omitempty"`
}

// xmlRaw is an element kept as it was read, as a tree rather than as
// its text: written back, every element names its own namespace, so no
// prefix declared on an ancestor goes missing (libvirt refuses an
// undeclared prefix, and adds qtune's own on the root itself). Text
// between child elements is not kept.
type xmlRaw struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []xmlRaw   `xml:",any"`
	Text     string     `xml:",chardata"`
}

// kept readies an element read for writing back.
func (r xmlRaw) kept() xmlRaw {
	r.Attrs = keptAttrs(r.Attrs)
	if len(r.Children) > 0 {
		r.Text = strings.TrimSpace(r.Text)
	}
	var children []xmlRaw
	for _, c := range r.Children {
		if xmlName(c.XMLName.Local) {
			children = append(children, c.kept())
		}
	}
	r.Children = children
	return r
}

// xmlName reports whether s is a name XML allows. encoding/xml reads
// names it would refuse to write (<000>); libvirt never stores such a
// thing, so an element or attribute named so is not kept.
func xmlName(s string) bool {
	for i, c := range s {
		switch {
		case c == '_' || unicode.IsLetter(c):
		case i > 0 && (c == '-' || c == '.' || unicode.IsDigit(c)):
		default:
			return false
		}
	}
	return s != ""
}

// DecodeOwnership reads the metadata element of domain; "" (no metadata)
// is an empty Ownership.
func DecodeOwnership(domain, doc string) (Ownership, error) {
	if strings.TrimSpace(doc) == "" {
		return Ownership{}, nil
	}
	var x xmlOwnership
	if err := xml.Unmarshal([]byte(doc), &x); err != nil {
		return Ownership{}, fmt.Errorf("domain %s: qtune metadata: %w", domain, err)
	}
	return x.decode(domain)
}

func (x xmlOwnership) decode(domain string) (Ownership, error) {
	where := "domain " + domain + ": qtune metadata"
	if x.XMLName.Local != "ownership" || (x.XMLName.Space != "" && x.XMLName.Space != OwnershipNamespace) {
		return Ownership{}, fmt.Errorf("%s: element <%s> in namespace %q, want <ownership> in %q", where, x.XMLName.Local, x.XMLName.Space, OwnershipNamespace)
	}
	ver, err := strconv.Atoi(x.Version)
	switch {
	case err != nil:
		return Ownership{}, fmt.Errorf("%s: version %q is not a number", where, x.Version)
	case ver > OwnershipVersion:
		return Ownership{}, fmt.Errorf("%s: version %d, this qtune reads %d: %w", where, ver, OwnershipVersion, ErrOwnershipVersion)
	case ver < 1:
		return Ownership{}, fmt.Errorf("%s: version %d", where, ver)
	}
	o := Ownership{unknownAttrs: keptAttrs(x.Attrs)}
	for _, r := range x.Other {
		if xmlName(r.XMLName.Local) {
			o.unknown = append(o.unknown, r.kept())
		}
	}
	for i, k := range x.Knobs {
		knob, err := k.decode()
		if err != nil {
			return Ownership{}, fmt.Errorf("%s: knob %d (%s %s): %w", where, i+1, k.Disk, k.Kind, err)
		}
		o.Knobs = append(o.Knobs, knob)
	}
	for i, j := range x.Jobs {
		since, err := parseTime(j.Since)
		if err != nil {
			return Ownership{}, fmt.Errorf("%s: job %d (%s): since: %w", where, i+1, j.ID, err)
		}
		if j.ID == "" || j.Disk == "" {
			return Ownership{}, fmt.Errorf("%s: job %d: id and disk are required", where, i+1)
		}
		o.Jobs = append(o.Jobs, CopyJob{ID: j.ID, Kind: j.Kind, Disk: j.Disk, Source: j.Source, Target: j.Target, Host: j.Host, Since: since})
	}
	return o, nil
}

func (k xmlKnob) decode() (OwnedKnob, error) {
	if k.Disk == "" || k.Kind == "" {
		return OwnedKnob{}, errors.New("disk and kind are required")
	}
	at, err := parseTime(k.SetAt)
	if err != nil {
		return OwnedKnob{}, fmt.Errorf("set_at: %w", err)
	}
	var persisted bool
	switch k.Persisted {
	case "yes":
		persisted = true
	case "no", "":
	default:
		return OwnedKnob{}, fmt.Errorf("persisted %q, want yes or no", k.Persisted)
	}
	knob := OwnedKnob{Disk: k.Disk, Kind: k.Kind, Rule: k.Rule, Seq: k.Seq, Host: k.Host, SetAt: at, Persisted: persisted}
	for _, f := range []struct {
		name string
		text string
		dst  *json.RawMessage
	}{{"original", k.Original, &knob.Original}, {"set", k.Set, &knob.Set}} {
		t := strings.TrimSpace(f.text)
		if t == "" {
			continue
		}
		if !json.Valid([]byte(t)) {
			return OwnedKnob{}, fmt.Errorf("%s is not JSON: %.60q", f.name, t)
		}
		*f.dst = json.RawMessage(t)
	}
	return knob, nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// keptAttrs drops namespace declarations from attributes read: the
// encoder declares what each element and attribute needs.
func keptAttrs(as []xml.Attr) []xml.Attr {
	var out []xml.Attr
	for _, a := range as {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") || !xmlName(a.Name.Local) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// Encode writes the metadata element. Records that could not be read
// back are refused.
func (o Ownership) Encode() (string, error) {
	x := xmlOwnership{
		XMLName: xml.Name{Space: OwnershipNamespace, Local: "ownership"},
		Version: strconv.Itoa(OwnershipVersion),
		Attrs:   o.unknownAttrs,
		Other:   o.unknown,
	}
	for i, k := range o.Knobs {
		if k.Disk == "" || k.Kind == "" {
			return "", fmt.Errorf("qtune metadata: knob %d: disk and kind are required", i+1)
		}
		for _, raw := range []json.RawMessage{k.Original, k.Set} {
			if len(raw) > 0 && !json.Valid(raw) {
				return "", fmt.Errorf("qtune metadata: knob %d (%s %s): value is not JSON", i+1, k.Disk, k.Kind)
			}
		}
		persisted := "no"
		if k.Persisted {
			persisted = "yes"
		}
		x.Knobs = append(x.Knobs, xmlKnob{Disk: k.Disk, Kind: k.Kind, Rule: k.Rule, Seq: k.Seq, Host: k.Host,
			SetAt: formatTime(k.SetAt), Persisted: persisted, Original: string(k.Original), Set: string(k.Set)})
	}
	for i, j := range o.Jobs {
		if j.ID == "" || j.Disk == "" {
			return "", fmt.Errorf("qtune metadata: job %d: id and disk are required", i+1)
		}
		x.Jobs = append(x.Jobs, xmlJob{ID: j.ID, Kind: j.Kind, Disk: j.Disk, Source: j.Source, Target: j.Target, Host: j.Host, Since: formatTime(j.Since)})
	}
	b, err := xml.Marshal(x)
	if err != nil {
		return "", fmt.Errorf("qtune metadata: %w", err)
	}
	return string(b), nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
