package virt

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"github.com/qtune/qtune/internal/sample"
)

// DomainDisk is what a domain's XML says about one disk.
type DomainDisk struct {
	Target       string // vda
	Source       string // image path
	Format       string // driver type: qcow2, raw
	Cache        string // driver cache: none, writeback, directsync, unsafe, writethrough; "" = default
	BackingDepth int    // layers in <backingStore> below the image
	Alias        string // libvirt's device alias, e.g. virtio-disk0
	// MetadataCacheMax is <driver><metadata_cache><max_size> in bytes, 0
	// when absent (QEMU's default applies).
	MetadataCacheMax uint64
	// IO, Discard and DetectZeroes are the driver's io, discard and
	// detect_zeroes attributes; "" when libvirt leaves QEMU's default.
	IO, Discard, DetectZeroes string
	// Throttle is the <iotune> in force (the live XML follows
	// blkdeviotune), with a group named after the device itself cleared:
	// that is no group at all.
	Throttle sample.Throttle
	// Encryption is the image's <encryption>, nil when it has none.
	Encryption *DiskEncryption
}

// DiskEncryption is a disk's <encryption>: the format libvirt opens the
// image with and the libvirt secret that holds its passphrase, named by
// UUID or by usage (one of them).
type DiskEncryption struct {
	Format      string // luks, or qcow (qcow2's old AES)
	SecretUUID  string
	SecretUsage string
}

// CacheFlags maps libvirt's cache mode to the file node's flags.
func (d DomainDisk) CacheFlags() (direct, noFlush bool) {
	c, _ := sample.ParseCacheMode(d.Cache)
	return c.Direct, c.NoFlush
}

// QOMPath is the disk's device model path, which throttle and histogram
// commands take under -blockdev.
func (d DomainDisk) QOMPath() string {
	if d.Alias == "" {
		return ""
	}
	return "/machine/peripheral/" + d.Alias + "/virtio-backend"
}

type xmlDomain struct {
	Disks []struct {
		Device string `xml:"device,attr"`
		Driver struct {
			Type          string `xml:"type,attr"`
			Cache         string `xml:"cache,attr"`
			IO            string `xml:"io,attr"`
			Discard       string `xml:"discard,attr"`
			DetectZeroes  string `xml:"detect_zeroes,attr"`
			MetadataCache struct {
				MaxSize struct {
					Unit  string `xml:"unit,attr"`
					Value uint64 `xml:",chardata"`
				} `xml:"max_size"`
			} `xml:"metadata_cache"`
		} `xml:"driver"`
		Source struct {
			File       string         `xml:"file,attr"`
			Dev        string         `xml:"dev,attr"`
			Encryption *xmlEncryption `xml:"encryption"`
		} `xml:"source"`
		// Encryption here is the placement before libvirt 5.x moved it
		// under <source>; both are read.
		Encryption *xmlEncryption `xml:"encryption"`
		Target     struct {
			Dev string `xml:"dev,attr"`
		} `xml:"target"`
		Alias struct {
			Name string `xml:"name,attr"`
		} `xml:"alias"`
		Backing *xmlBacking `xml:"backingStore"`
		IOTune  struct {
			Fields []struct {
				XMLName xml.Name
				Value   string `xml:",chardata"`
			} `xml:",any"`
		} `xml:"iotune"`
	} `xml:"devices>disk"`
}

type xmlEncryption struct {
	Format string `xml:"format,attr"`
	Secret []struct {
		Type  string `xml:"type,attr"`
		UUID  string `xml:"uuid,attr"`
		Usage string `xml:"usage,attr"`
	} `xml:"secret"`
}

func (e *xmlEncryption) parse() *DiskEncryption {
	if e == nil {
		return nil
	}
	out := &DiskEncryption{Format: e.Format}
	for _, s := range e.Secret {
		if s.Type == "passphrase" || s.Type == "" {
			out.SecretUUID, out.SecretUsage = s.UUID, s.Usage
		}
	}
	return out
}

type xmlBacking struct {
	Source *struct {
		File string `xml:"file,attr"`
	} `xml:"source"`
	Backing *xmlBacking `xml:"backingStore"`
}

// ParseDomainDisks reads the disks of a domain XML.
func ParseDomainDisks(doc string) ([]DomainDisk, error) {
	var d xmlDomain
	if err := xml.Unmarshal([]byte(doc), &d); err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	var out []DomainDisk
	for _, x := range d.Disks {
		if x.Device != "" && x.Device != "disk" {
			continue
		}
		dd := DomainDisk{
			Target: x.Target.Dev, Source: x.Source.File, Format: x.Driver.Type,
			Cache: x.Driver.Cache, Alias: x.Alias.Name,
			IO: x.Driver.IO, Discard: x.Driver.Discard, DetectZeroes: x.Driver.DetectZeroes,
		}
		if dd.Source == "" {
			dd.Source = x.Source.Dev
		}
		dd.Encryption = x.Source.Encryption.parse()
		if dd.Encryption == nil {
			dd.Encryption = x.Encryption.parse()
		}
		for b := x.Backing; b != nil && b.Source != nil; b = b.Backing {
			dd.BackingDepth++
		}
		if ms := x.Driver.MetadataCache.MaxSize; ms.Value > 0 {
			dd.MetadataCacheMax = ms.Value * unitBytes(ms.Unit)
		}
		vals := map[string]string{}
		for _, f := range x.IOTune.Fields {
			vals[f.XMLName.Local] = strings.TrimSpace(f.Value)
		}
		t, err := throttleFromXML(vals)
		if err != nil {
			return nil, fmt.Errorf("domain XML: disk %s: %w", dd.Target, err)
		}
		dd.Throttle = t
		out = append(out, dd)
	}
	return out, nil
}

// unitBytes is libvirt's scaled-integer unit.
func unitBytes(u string) uint64 {
	switch u {
	case "", "b", "bytes":
		return 1
	case "KB":
		return 1000
	case "k", "KiB":
		return 1 << 10
	case "MB":
		return 1000 * 1000
	case "M", "MiB":
		return 1 << 20
	case "GB":
		return 1000 * 1000 * 1000
	case "G", "GiB":
		return 1 << 30
	}
	return 1
}

// throttleFromXML decodes a disk's <iotune> children (the same names as
// the typed parameters of DomainGetBlockIOTune).
func throttleFromXML(vals map[string]string) (sample.Throttle, error) {
	var t sample.Throttle
	for _, f := range iotuneFields {
		v, ok := vals[f.name]
		if !ok || v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return t, fmt.Errorf("iotune %s %q: %w", f.name, v, err)
		}
		*f.get(&t) = n
	}
	t.Group = OwnGroup(vals["group_name"])
	return t, nil
}

// OwnGroup clears a throttle group named after the disk's own device: a
// disk throttled without a group is in a group of its own named after its
// QOM path ("drive-<alias>" on older libvirt), which is no group at all.
func OwnGroup(g string) string {
	if strings.HasPrefix(g, "/machine/peripheral/") || strings.HasPrefix(g, "drive-") {
		return ""
	}
	return g
}
