package qmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

var jsonSeeds = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0.5e+3`, `"a\"b\\c\u00e9\/"`, `{"a":[1,{"b":null}],"c":"d"}`,
	` [ 1 , 2 ] `, `01`, `1.`, `.5`, `-`, `1e`, `"\x"`, `"\u12"`, "\"\x01\"", `{"a" 1}`, `{"a":1,}`, `[1,]`,
	`[1 2]`, `{1:2}`, `nul`, `[`, `{"a":`, `"abc`, `[]]`, `{} {}`, "\"\xff\"", `tru`, `1 2`,
}

// FuzzScannerAgreesWithEncodingJSON: the scanner accepts what json.Valid
// accepts, nothing more and nothing less.
func FuzzScannerAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := wholeValue(b)
		if valid := json.Valid(b); valid != (err == nil) {
			t.Fatalf("%q: json.Valid %v, scanner error %v", b, valid, err)
		}
	})
}

func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds {
		_, _, err := wholeValue([]byte(s))
		if valid := json.Valid([]byte(s)); valid != (err == nil) {
			t.Errorf("%q: json.Valid %v, scanner error %v", s, valid, err)
		}
	}
}

// decodeStdlib is what the hand-written decoder must give.
func decodeStdlib(b []byte) ([]sampledStats, error) {
	var out []sampledStats
	err := json.Unmarshal(b, &out)
	return out, err
}

func sameStats(a, b []sampledStats) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// FuzzDecodeSampledStats: the hand-written query-blockstats decoder fails
// on what json.Unmarshal fails on, and otherwise decodes the same
// values, also into a buffer holding an earlier reply. encoding/json
// also matches member names case-insensitively (QEMU writes them in lower
// case); inputs where that could matter are not compared.
func FuzzDecodeSampledStats(f *testing.F) {
	golden, err := os.ReadFile("testdata/query-blockstats.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	for _, s := range []string{`null`, `[null]`, `[{"stats":null,"device":null}]`, `{}`, `[1]`, `[{"device":5}]`,
		`[{"stats":{"rd_bytes":-1}}]`, `[{"stats":{"rd_bytes":1.5}}]`, `[{"stats":{"rd_bytes":18446744073709551616}}]`,
		`[{"stats":{"rd_bytes":18446744073709551615,"rd_latency_histogram":{"boundaries":[10],"bins":[1,2]}}}]`,
		`[{"qdev":"a","stats":{"wr_bytes":1}},{"qdev":"a","stats":{"wr_bytes":2},"stats":{"rd_bytes":3}}]`,
		"[{\"device\":\"\xff\"}]", `[{"device":"\u00e9x"}]`, `[{"stAts":{"rd_BYtes":{}}}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A member name that only encoding/json's case folding matches
		// (upper case, an escape, or a non-ASCII letter such as the
		// Kelvin sign) makes it decode, or fail on, a member the decoder
		// rightly takes for another: such inputs are not compared at all.
		if bytes.ContainsAny(b, `ABCDEFGHIJKLMNOPQRSTUVWXYZ\`) || !isASCII(b) {
			return
		}
		want, wantErr := decodeStdlib(b)
		got, err := decodeSampledStats(b, nil)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: encoding/json error %v, decoder error %v", b, wantErr, err)
		}
		if err != nil {
			return
		}
		if !sameStats(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
		}
		// Into the storage of an earlier reply, and of this one.
		for _, prev := range [][]byte{golden, b} {
			buf, _ := decodeSampledStats(prev, nil)
			if got, _ := decodeSampledStats(b, buf); !sameStats(got, want) {
				t.Fatalf("%q after %.40q:\n got %+v\nwant %+v", b, prev, got, want)
			}
		}
	})
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func TestDecodeSampledStatsStrings(t *testing.T) {
	// Escapes and bad UTF-8 are unquoted as encoding/json does.
	for _, s := range []string{`[{"device":"\u00e9\"x","qdev":"/a/b"}]`, "[{\"device\":\"a\xffb\"}]"} {
		want, _ := decodeStdlib([]byte(s))
		got, err := decodeSampledStats([]byte(s), nil)
		if err != nil || !sameStats(got, want) {
			t.Errorf("%s: got %+v (%v), want %+v", s, got, err, want)
		}
	}
}

func TestFrameReader(t *testing.T) {
	msgs := []string{
		`{"return": {}, "id": "q1"}`,
		"{\n    \"return\": [\n        {\n            \"a\": \"}]{[\\\"\"\n        }\n    ],\n    \"id\": \"q2\"\n}",
		`{"event": "X", "data": {"big": "` + strings.Repeat("x", 200) + `"}}`,
		`[]`,
	}
	stream := "\r\n" + strings.Join(msgs, "\r\n") + " " + msgs[0]
	for name, r := range map[string]io.Reader{
		"whole":       strings.NewReader(stream),
		"byte a time": iotest.OneByteReader(strings.NewReader(stream)),
	} {
		fr := newFrameReader(r, 16) // smaller than a message: it grows
		for i, want := range append(msgs, msgs[0]) {
			got, err := fr.next()
			if err != nil || string(got) != want {
				t.Fatalf("%s: message %d: %q (%v), want %q", name, i, got, err, want)
			}
		}
		if _, err := fr.next(); err != io.EOF {
			t.Errorf("%s: at the end: %v, want EOF", name, err)
		}
	}
	for _, bad := range []string{`{"a": [}`, `x{}`, `"s"`} {
		_, err := newFrameReader(strings.NewReader(bad), 64).next()
		var se *syntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: %v, want a syntax error", bad, err)
		}
	}
	if _, err := newFrameReader(strings.NewReader(`{"a": `), 64).next(); err != io.ErrUnexpectedEOF {
		t.Errorf("cut message: %v, want unexpected EOF", err)
	}
}

// benchReply is a reply of 20 disks' stats, as one VM sends it every
// second, in the message that carries it.
func benchReply(b *testing.B) []byte {
	golden, err := os.ReadFile("testdata/query-blockstats.json")
	if err != nil {
		b.Fatal(err)
	}
	var one []json.RawMessage
	if err := json.Unmarshal(golden, &one); err != nil {
		b.Fatal(err)
	}
	var many []json.RawMessage
	for len(many) < 20 {
		many = append(many, one...)
	}
	ret, _ := json.Marshal(many[:20])
	return append(append([]byte(`{"return": `), ret...), `, "id": "q1"}`...)
}

func BenchmarkReplyScanner(b *testing.B) {
	msg := benchReply(b)
	var buf []sampledStats
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		m, err := decodeMessage(msg)
		if err != nil {
			b.Fatal(err)
		}
		if buf, err = decodeSampledStats(m.Return, buf); err != nil || len(buf) != 20 {
			b.Fatal(err)
		}
	}
}

func BenchmarkReplyEncodingJSON(b *testing.B) {
	msg := benchReply(b)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		var m struct {
			Return json.RawMessage `json:"return"`
			ID     json.RawMessage `json:"id"`
		}
		if err := json.NewDecoder(bytes.NewReader(msg)).Decode(&m); err != nil {
			b.Fatal(err)
		}
		var s []sampledStats
		if err := json.Unmarshal(m.Return, &s); err != nil || len(s) != 20 {
			b.Fatal(err)
		}
	}
}

func TestFrameReaderGivesBackTheRoomOfALargeMessage(t *testing.T) {
	big := `{"return": "` + strings.Repeat("x", 1000) + `"}`
	stream := big + strings.Repeat(`{"return": {}}`, 10)
	fr := newFrameReader(iotest.OneByteReader(strings.NewReader(stream)), 64)
	if m, err := fr.next(); err != nil || string(m) != big {
		t.Fatalf("large message: %v", err)
	}
	grown := len(fr.buf)
	for i := 0; i < 10; i++ {
		if _, err := fr.next(); err != nil {
			t.Fatal(err)
		}
	}
	if grown < 1000 || len(fr.buf) != 64 {
		t.Errorf("buffer %d bytes for the large message, %d after: want it back to 64", grown, len(fr.buf))
	}
}
