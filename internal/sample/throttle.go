package sample

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Limits prints the limits that are set, in QEMU's names, as the audit
// log and qtune status show a throttle: "iops_wr=1000 iops_wr_max=1500",
// or "unthrottled".
func (t Throttle) Limits() string {
	b, _ := json.Marshal(t)
	// UseNumber keeps limits as the integers they are: a float64 would
	// print 100 MiB/s as 1.048576e+08.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	dec.Decode(&m)
	var parts []string
	for _, k := range []string{"iops", "iops_rd", "iops_wr", "bps", "bps_rd", "bps_wr", "iops_max", "iops_rd_max", "iops_wr_max", "bps_max", "bps_rd_max", "bps_wr_max", "iops_size", "group"} {
		if v, ok := m[k]; ok && v != json.Number("0") && v != "" {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if len(parts) == 0 {
		return "unthrottled"
	}
	return strings.Join(parts, " ")
}
