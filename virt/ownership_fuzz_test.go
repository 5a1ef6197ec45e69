package virt

import "testing"

// Whatever metadata a domain carries, reading it never panics, and what
// was read is written back in a form that reads the same again.
func FuzzDecodeOwnership(f *testing.F) {
	good, _ := sampleOwnership().Encode()
	f.Add(good)
	f.Add(`<ownership version="1"><knob disk="vda" kind="throttle"><original>{}</original></knob><lease a="1"><why>m</why></lease></ownership>`)
	f.Add(`<qtune:ownership xmlns:qtune="` + OwnershipNamespace + `" version="1" w="x"><qtune:job id="j" disk="vda" since="2026-01-01T00:00:00Z"/></qtune:ownership>`)
	f.Fuzz(func(t *testing.T, doc string) {
		o, err := DecodeOwnership("fuzz", doc)
		if err != nil {
			return
		}
		first, err := o.Encode()
		if err != nil {
			t.Fatalf("read %q but cannot write it back: %v", doc, err)
		}
		again, err := DecodeOwnership("fuzz", first)
		if err != nil {
			t.Fatalf("wrote %q, which does not read: %v", first, err)
		}
		second, err := again.Encode()
		if err != nil || second != first {
			t.Fatalf("rewrite changed:\n%s\n%s (%v)", first, second, err)
		}
	})
}
