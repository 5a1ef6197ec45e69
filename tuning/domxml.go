package tuning

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/state"
)

// Editing a persistent domain definition by hand-made string surgery on
// one <disk>'s <driver> element: a round trip through encoding/xml would
// drop or reorder everything qtune does not model, and the definition is
// the operator's.

var (
	diskElem   = regexp.MustCompile(`(?s)<disk\b.*?</disk>`)
	driverElem = regexp.MustCompile(`(?s)<driver\b[^>]*?(/>|>.*?</driver>)`)
	metaCache  = regexp.MustCompile(`(?s)<metadata_cache>.*?</metadata_cache>`)
)

// libvirtCacheMode names cache flags as <driver cache=...> does.
func libvirtCacheMode(c state.CacheState) (string, error) {
	if c.Direct && c.NoFlush {
		return "", fmt.Errorf("direct and no-flush together have no libvirt cache mode")
	}
	return sample.HostCache(c.Direct, c.NoFlush).CacheMode(), nil
}

// editDiskDriver applies edit to the <driver> element of the disk whose
// target is dev.
func editDiskDriver(doc, dev string, edit func(driver string) string) (string, error) {
	found := false
	target := regexp.MustCompile(`<target\b[^>]*\bdev=['"]` + regexp.QuoteMeta(dev) + `['"]`)
	out := diskElem.ReplaceAllStringFunc(doc, func(disk string) string {
		if !target.MatchString(disk) {
			return disk
		}
		loc := driverElem.FindStringIndex(disk)
		if loc == nil {
			return disk
		}
		found = true
		return disk[:loc[0]] + edit(disk[loc[0]:loc[1]]) + disk[loc[1]:]
	})
	if !found {
		return "", fmt.Errorf("domain definition has no disk %s with a <driver> element", dev)
	}
	return out, nil
}

// setAttr sets attribute name on the start tag of element el.
func setAttr(el, name, value string) string {
	end := strings.Index(el, ">")
	if strings.HasSuffix(el[:end+1], "/>") {
		end--
	}
	start := el[:end]
	attr := regexp.MustCompile(`\s` + name + `=(['"])[^'"]*(['"])`)
	if attr.MatchString(start) {
		start = attr.ReplaceAllString(start, " "+name+"='"+value+"'")
	} else {
		start += " " + name + "='" + value + "'"
	}
	return start + el[end:]
}

// setMetadataCache puts <metadata_cache><max_size> into a <driver>
// element (or removes it when size is 0).
func setMetadataCache(el string, size uint64) string {
	inner := ""
	if size > 0 {
		inner = fmt.Sprintf("<metadata_cache><max_size unit='bytes'>%d</max_size></metadata_cache>", size)
	}
	return restoreMetadataCache(el, inner)
}

// restoreMetadataCache makes a <driver> element's <metadata_cache> the
// text elem, as it stands ("" removes it). A <driver> left with nothing
// inside closes itself again, as libvirt writes it.
func restoreMetadataCache(el, elem string) string {
	if strings.HasSuffix(el, "/>") {
		if elem == "" {
			return el
		}
		return strings.TrimSuffix(el, "/>") + ">" + elem + "</driver>"
	}
	if metaCache.MatchString(el) {
		el = metaCache.ReplaceAllLiteralString(el, elem)
	} else {
		el = strings.TrimSuffix(el, "</driver>") + elem + "</driver>"
	}
	start := strings.Index(el, ">") + 1
	if strings.TrimSpace(strings.TrimSuffix(el[start:], "</driver>")) == "" {
		return el[:start-1] + "/>"
	}
	return el
}

// RepointDisk points disk dev of a definition from old to new (and its
// driver to format). A definition that no longer names old is left as
// it is: someone else changed it.
func RepointDisk(doc, dev, old, new, format string) (string, error) {
	target := regexp.MustCompile(`<target\b[^>]*\bdev=['"]` + regexp.QuoteMeta(dev) + `['"]`)
	source := regexp.MustCompile(`(<source\b[^>]*\bfile=)(['"])` + regexp.QuoteMeta(XMLEscape(old)) + `(['"])`)
	found := false
	out := diskElem.ReplaceAllStringFunc(doc, func(disk string) string {
		if !target.MatchString(disk) || !source.MatchString(disk) {
			return disk
		}
		found = true
		disk = source.ReplaceAllStringFunc(disk, func(m string) string {
			return source.FindStringSubmatch(m)[1] + "'" + XMLEscape(new) + "'"
		})
		if loc := driverElem.FindStringIndex(disk); loc != nil && format != "" {
			disk = disk[:loc[0]] + setAttr(disk[loc[0]:loc[1]], "type", format) + disk[loc[1]:]
		}
		return disk
	})
	if !found {
		return doc, nil
	}
	return out, nil
}

// XMLEscape escapes s for an attribute value or text of a domain XML.
func XMLEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;").Replace(s)
}
