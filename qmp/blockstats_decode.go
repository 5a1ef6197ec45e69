package qmp

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// decodeSampledStats decodes a query-blockstats reply into what a
// sample uses, reusing out's storage (and its device and QOM path
// strings when they did not change): the reply comes from every VM every
// second, and most of it (the file nodes' counters under "parent", timed
// stats, unused counters) is only checked and skipped. It gives what
// json.Unmarshal gives into []sampledStats for every reply QEMU sends
// (fuzzed against it); unlike encoding/json it matches member names
// exactly, as QEMU writes them.
func decodeSampledStats(b []byte, out []sampledStats) ([]sampledStats, error) {
	start := skipSpace(b, 0)
	if start < len(b) && b[start] != '[' {
		// Not an array: null, another value, or no JSON at all.
		if _, _, err := wholeValue(b); err != nil || b[start] == 'n' {
			return out[:0], err
		}
		return out[:0], typeError(b, start, "an array")
	}
	n := 0
	end, err := walkArray(b, start, func(at int) (int, error) {
		if n == len(out) {
			out = append(out, sampledStats{})
		}
		e := &out[n]
		n++
		return decodeStatsEntry(b, at, e)
	})
	if err == nil {
		if i := skipSpace(b, end); i != len(b) {
			err = badJSON(b, i, "after the value")
		}
	}
	return out[:n], err
}

func typeError(b []byte, at int, want string) error {
	end, _ := skipValue(b, at)
	v := b[at:end]
	if len(v) > 20 {
		v = append(v[:20:20], "..."...)
	}
	return fmt.Errorf("query-blockstats: %s at offset %d where %s belongs", v, at, want)
}

// decodeStatsEntry decodes one disk's entry into e, which may hold the
// entry of the same position in the previous reply.
func decodeStatsEntry(b []byte, at int, e *sampledStats) (int, error) {
	device, qdev := e.Device, e.QDev
	*e = sampledStats{}
	if b[at] == 'n' {
		return skipValue(b, at)
	}
	if b[at] != '{' {
		return at, typeError(b, at, "an object")
	}
	return walkObject(b, at, func(key []byte, at int) (int, error) {
		switch string(key) {
		case "device":
			return decodeString(b, at, &e.Device, device)
		case "qdev":
			return decodeString(b, at, &e.QDev, qdev)
		case "stats":
			return decodeCounters(b, at, e)
		}
		return skipValue(b, at)
	})
}

// decodeString decodes the string at b[at] into dst, reusing prev when
// it has the same text.
func decodeString(b []byte, at int, dst *string, prev string) (int, error) {
	if b[at] == 'n' {
		*dst = ""
		return skipValue(b, at)
	}
	if b[at] != '"' {
		return at, typeError(b, at, "a string")
	}
	end, escaped, err := scanString(b, at)
	if err != nil {
		return end, err
	}
	switch raw := b[at+1 : end-1]; {
	case escaped || !utf8.Valid(raw):
		// encoding/json unquotes, and turns bad UTF-8 into U+FFFD.
		if err := json.Unmarshal(b[at:end], dst); err != nil {
			return end, err
		}
	case string(raw) == prev:
		*dst = prev
	default:
		*dst = string(raw)
	}
	return end, nil
}

func decodeCounters(b []byte, at int, e *sampledStats) (int, error) {
	if b[at] == 'n' {
		return skipValue(b, at)
	}
	if b[at] != '{' {
		return at, typeError(b, at, "an object")
	}
	st := &e.Stats
	return walkObject(b, at, func(key []byte, at int) (int, error) {
		var dst *uint64
		switch string(key) {
		case "rd_bytes":
			dst = &st.RdBytes
		case "wr_bytes":
			dst = &st.WrBytes
		case "rd_operations":
			dst = &st.RdOperations
		case "wr_operations":
			dst = &st.WrOperations
		case "flush_operations":
			dst = &st.FlushOperations
		case "rd_total_time_ns":
			dst = &st.RdTotalTimeNs
		case "wr_total_time_ns":
			dst = &st.WrTotalTimeNs
		case "flush_total_time_ns":
			dst = &st.FlushTotalTimeNs
		case "failed_rd_operations":
			dst = &st.FailedRdOps
		case "failed_wr_operations":
			dst = &st.FailedWrOps
		case "failed_flush_operations":
			dst = &st.FailedFlushOps
		case "invalid_rd_operations":
			dst = &st.InvalidRdOps
		case "invalid_wr_operations":
			dst = &st.InvalidWrOps
		case "invalid_flush_operations":
			dst = &st.InvalidFlushOps
		case "rd_latency_histogram":
			return decodeHistogram(b, at, &st.RdLatencyHist)
		case "wr_latency_histogram":
			return decodeHistogram(b, at, &st.WrLatencyHist)
		default:
			return skipValue(b, at)
		}
		return decodeUint(b, at, dst)
	})
}

// decodeUint decodes the number at b[at] into dst; null leaves it be.
func decodeUint(b []byte, at int, dst *uint64) (int, error) {
	if b[at] == 'n' {
		return skipValue(b, at)
	}
	if b[at] != '-' && (b[at] < '0' || b[at] > '9') {
		return at, typeError(b, at, "a number")
	}
	end, err := skipNumber(b, at)
	if err != nil {
		return end, err
	}
	var v uint64
	for _, c := range b[at:end] {
		if c < '0' || c > '9' || v > (1<<64-1-uint64(c-'0'))/10 {
			return end, typeError(b, at, "an unsigned 64-bit integer")
		}
		v = v*10 + uint64(c-'0')
	}
	*dst = v
	return end, nil
}

// decodeHistogram is rare (histograms are opt-in) and small: encoding/json.
func decodeHistogram(b []byte, at int, dst **LatencyHistogram) (int, error) {
	end, err := skipValue(b, at)
	if err != nil {
		return end, err
	}
	*dst = nil
	if err := json.Unmarshal(b[at:end], dst); err != nil {
		return end, err
	}
	return end, nil
}
