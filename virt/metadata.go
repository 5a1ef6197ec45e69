package virt

import (
	"context"
	"encoding/xml"
	"fmt"

	"github.com/digitalocean/go-libvirt"
)

// Metadata reads qtune's metadata element of the running domain (or,
// with inactive, of its persistent definition); "" when there is none.
func (v *Libvirt) Metadata(ctx context.Context, domain string, inactive bool) (string, error) {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return "", err
	}
	flags := libvirt.DomainAffectLive
	if inactive {
		flags = libvirt.DomainAffectConfig
	}
	var doc string
	err = v.call(ctx, "get qtune metadata of "+domain, func(l *libvirt.Libvirt) error {
		var err error
		doc, err = l.DomainGetMetadata(d, int32(libvirt.DomainMetadataElement), libvirt.OptString{OwnershipNamespace}, flags)
		if isNoMetadata(err) {
			doc, err = "", nil
		}
		return err
	})
	return doc, err
}

func isNoMetadata(err error) bool { return libvirtCode(err) == libvirt.ErrNoDomainMetadata }

// SetMetadata writes qtune's metadata element on the running domain,
// and with persist on its persistent definition too; "" removes it.
// libvirt carries the live element along in a migration, and changing
// metadata does not taint the domain.
func (v *Libvirt) SetMetadata(ctx context.Context, domain, element string, persist bool) error {
	flags := libvirt.DomainAffectLive
	if persist {
		flags |= libvirt.DomainAffectConfig
	}
	return v.setMetadata(ctx, domain, element, flags)
}

// SetDefinedMetadata writes qtune's metadata element on the persistent
// definition only; "" removes it. The definition holds the records of
// persisted changes, which outlive the QEMU process; the live domain
// holds those and the rest.
func (v *Libvirt) SetDefinedMetadata(ctx context.Context, domain, element string) error {
	return v.setMetadata(ctx, domain, element, libvirt.DomainAffectConfig)
}

func (v *Libvirt) setMetadata(ctx context.Context, domain, element string, flags libvirt.DomainModificationImpact) error {
	d, err := v.lookup(ctx, domain)
	if err != nil {
		return err
	}
	var meta libvirt.OptString
	if element != "" {
		meta = libvirt.OptString{element}
	}
	return v.call(ctx, "set qtune metadata of "+domain, func(l *libvirt.Libvirt) error {
		return l.DomainSetMetadata(d, int32(libvirt.DomainMetadataElement), meta,
			libvirt.OptString{OwnershipKey}, libvirt.OptString{OwnershipNamespace}, flags)
	})
}

// Ownership reads and decodes qtune's metadata of the domain (see
// Metadata); a domain without any has an empty Ownership.
func (v *Libvirt) Ownership(ctx context.Context, domain string, inactive bool) (Ownership, error) {
	doc, err := v.Metadata(ctx, domain, inactive)
	if err != nil {
		return Ownership{}, err
	}
	return DecodeOwnership(domain, doc)
}

// SetOwnership encodes o and writes it (see SetMetadata); an empty
// Ownership removes the element.
func (v *Libvirt) SetOwnership(ctx context.Context, domain string, o Ownership, persist bool) error {
	if o.Empty() {
		return v.SetMetadata(ctx, domain, "", persist)
	}
	doc, err := o.Encode()
	if err != nil {
		return fmt.Errorf("domain %s: %w", domain, err)
	}
	return v.SetMetadata(ctx, domain, doc, persist)
}

// SetDefinedOwnership encodes o and writes it on the persistent
// definition only (see SetDefinedMetadata); an empty Ownership removes
// the element there.
func (v *Libvirt) SetDefinedOwnership(ctx context.Context, domain string, o Ownership) error {
	if o.Empty() {
		return v.SetDefinedMetadata(ctx, domain, "")
	}
	doc, err := o.Encode()
	if err != nil {
		return fmt.Errorf("domain %s: %w", domain, err)
	}
	return v.SetDefinedMetadata(ctx, domain, doc)
}

// xmlDomainMetadata finds qtune's element in a domain XML. The tag's
// namespace must be OwnershipNamespace (a test checks it).
type xmlDomainMetadata struct {
	Metadata struct {
		Ownership *xmlOwnership `xml:"https://github.com/qtune/qtune/xmlns/ownership ownership"`
	} `xml:"metadata"`
}

// ParseDomainOwnership reads qtune's metadata from a domain XML (virsh
// dumpxml and DomainXML include <metadata>), so a domain qtune reads
// anyway needs no extra call. found is false when the XML has none.
func ParseDomainOwnership(domain, doc string) (o Ownership, found bool, err error) {
	var x xmlDomainMetadata
	if err := xml.Unmarshal([]byte(doc), &x); err != nil {
		return Ownership{}, false, fmt.Errorf("domain %s: XML: %w", domain, err)
	}
	if x.Metadata.Ownership == nil {
		return Ownership{}, false, nil
	}
	o, err = x.Metadata.Ownership.decode(domain)
	return o, err == nil, err
}
