package qmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// blockdev-reopen resets every option it is not given and no command
// reports a node's current options, so a safe reopen starts from the exact
// options the node was created with (libvirt puts them on QEMU's command
// line as -blockdev JSON) and changes only what it means to change.

// ErrOptionsUnknown is returned when a node's full options cannot be known
// for sure, so a reopen could silently reset something.
var ErrOptionsUnknown = errors.New("qmp: node options not known for sure")

// AutoNodeAdvice says what to do about a node QEMU named itself.
const AutoNodeAdvice = "QEMU named this node itself, as it does for -drive disks and inline children; " +
	"cache mode and qcow2 cache need the disk started with -blockdev and an explicit node-name per layer; " +
	"throttles work either way"

// NotOnCommandLineAdvice says what to do about a node whose options are
// not on QEMU's command line.
const NotOnCommandLineAdvice = "the node is not on QEMU's command line, e.g. added later by blockdev-add, " +
	"and QEMU does not report a node's aio, discard or qcow2 cache options, so a reopen could silently reset them; " +
	"qtune changes its cache mode or qcow2 cache only once the VM is restarted with it as a -blockdev (throttles work now)"

// NodeOptions is one node's option tree, as given to -blockdev.
type NodeOptions map[string]any

// ParseBlockdevArgs collects the -blockdev options of a QEMU argv by node
// name, from JSON and from QEMU's key=value form. One that cannot be read
// for sure (see ParseKeyvalBlockdev) is reported in the error list but
// does not stop the others from being read.
func ParseBlockdevArgs(argv []string) (map[string]NodeOptions, error) {
	out := map[string]NodeOptions{}
	var problems []string
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] != "-blockdev" && argv[i] != "--blockdev" {
			continue
		}
		v := argv[i+1]
		i++
		o, err := parseBlockdev(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("-blockdev %q: %v", v, err))
			continue
		}
		name, _ := o["node-name"].(string)
		if name == "" {
			problems = append(problems, fmt.Sprintf("-blockdev %q has no node-name", v))
			continue
		}
		out[name] = o
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("%w: %s", ErrOptionsUnknown, strings.Join(problems, "; "))
	}
	return out, nil
}

func parseBlockdev(v string) (NodeOptions, error) {
	if !strings.HasPrefix(strings.TrimSpace(v), "{") {
		return ParseKeyvalBlockdev(v)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.UseNumber()
	var o NodeOptions
	if err := dec.Decode(&o); err != nil {
		return nil, err
	}
	return o, nil
}

// CommandLineBlockdevs reads the -blockdev options from a running QEMU's
// /proc/<pid>/cmdline.
func CommandLineBlockdevs(pid int) (map[string]NodeOptions, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("read QEMU command line: %w", err)
	}
	return ParseBlockdevArgs(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"))
}

// ReopenOptions returns the blockdev-reopen entry for node: a deep copy of
// its full options with changes applied. Change keys are dotted paths
// ("l2-cache-size", "cache.direct"); a nil value removes the option (back
// to QEMU's default). It refuses auto-named nodes, nodes it has no options
// for, and any change to what reopen cannot change.
func ReopenOptions(all map[string]NodeOptions, node string, changes map[string]any) (map[string]any, error) {
	if IsAutoNodeName(node) {
		return nil, fmt.Errorf("reopen %s: %w (%s)", node, ErrAutoNode, AutoNodeAdvice)
	}
	orig, ok := all[node]
	if !ok {
		return nil, fmt.Errorf("reopen %s: no -blockdev options recorded for it (%s): %w", node, NotOnCommandLineAdvice, ErrOptionsUnknown)
	}
	if err := checkChildren(all, node, orig); err != nil {
		return nil, err
	}
	opts := deepCopy(map[string]any(orig)).(map[string]any)
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "driver", "node-name", "aio", "file", "backing":
			return nil, fmt.Errorf("reopen %s: %q cannot be changed by qtune", node, k)
		}
		setPath(opts, strings.Split(k, "."), changes[k])
	}
	return opts, nil
}

// checkChildren makes sure every child the options name is a node whose
// options are known too, and that a qcow2 node says which backing it has:
// without "backing", QEMU opened the chain itself under auto names.
func checkChildren(all map[string]NodeOptions, node string, o NodeOptions) error {
	if o["driver"] == "qcow2" {
		if _, ok := o["backing"]; !ok {
			return fmt.Errorf("reopen %s: its backing chain was opened implicitly (no \"backing\" option): %w", node, ErrOptionsUnknown)
		}
	}
	for _, k := range []string{"file", "backing"} {
		ref, ok := o[k].(string)
		if !ok {
			continue // inline child object or null: repeated as it was
		}
		if _, known := all[ref]; !known {
			return fmt.Errorf("reopen %s: child %s=%s has no recorded options: %w", node, k, ref, ErrOptionsUnknown)
		}
	}
	return nil
}

func setPath(m map[string]any, path []string, v any) {
	for len(path) > 1 {
		next, ok := m[path[0]].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[path[0]] = next
		}
		m, path = next, path[1:]
	}
	if v == nil {
		delete(m, path[0])
		return
	}
	m[path[0]] = v
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, x := range t {
			c[k] = deepCopy(x)
		}
		return c
	case NodeOptions:
		return deepCopy(map[string]any(t))
	case []any:
		c := make([]any, len(t))
		for i, x := range t {
			c[i] = deepCopy(x)
		}
		return c
	default:
		return v
	}
}

// DiffNodes lists every observable difference between two
// query-named-block-nodes readings, except the fields named in allow as
// "<node>.<field>" (e.g. "disk0-file.cache.direct"). A node that appeared
// or vanished is a difference too. Used to verify that a reopen changed
// only what it meant to.
func DiffNodes(before, after []BlockDeviceInfo, allow ...string) []string {
	ok := map[string]bool{}
	for _, a := range allow {
		ok[a] = true
	}
	idx := func(list []BlockDeviceInfo) map[string]map[string]any {
		m := map[string]map[string]any{}
		for _, n := range list {
			if n.NodeName == "" {
				continue
			}
			m[n.NodeName] = flatten(n)
		}
		return m
	}
	b, a := idx(before), idx(after)
	var diffs []string
	for name, bf := range b {
		af, found := a[name]
		if !found {
			diffs = append(diffs, fmt.Sprintf("node %s vanished", name))
			continue
		}
		for k, bv := range bf {
			if av := af[k]; !reflect.DeepEqual(av, bv) && !ok[name+"."+k] {
				diffs = append(diffs, fmt.Sprintf("%s.%s: %v -> %v", name, k, bv, av))
			}
		}
	}
	for name := range a {
		if _, found := b[name]; !found {
			diffs = append(diffs, fmt.Sprintf("node %s appeared", name))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// flatten turns a node description into dotted keys. The image's
// allocation is left out: it moves with guest writes. So is the size of
// a protocol node's file, which is the file's length and grows as the
// guest writes new clusters of the format above it.
func flatten(n BlockDeviceInfo) map[string]any {
	raw, _ := json.Marshal(n)
	var m map[string]any
	json.Unmarshal(raw, &m)
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if mm, ok := v.(map[string]any); ok {
			for k, x := range mm {
				walk(prefix+k+".", x)
			}
			return
		}
		key := strings.TrimSuffix(prefix, ".")
		if strings.HasSuffix(key, "actual-size") || strings.HasSuffix(key, "dirty-flag") {
			return
		}
		out[key] = v
	}
	walk("", m)
	if protocolDrivers[n.Driver] {
		delete(out, "image.virtual-size")
	}
	return out
}

// protocolDrivers are the drivers of nodes whose virtual size is the
// length of what they hold, not a size the guest sees.
var protocolDrivers = map[string]bool{"file": true, "host_device": true}

// L2CacheSizes returns the l2-cache-size of every qcow2 node whose options
// set it, for SampleOptions.L2CacheSize.
func L2CacheSizes(opts map[string]NodeOptions) map[string]uint64 {
	out := map[string]uint64{}
	for name, o := range opts {
		if o["driver"] != "qcow2" {
			continue
		}
		if v, ok := OptionUint(o, "l2-cache-size"); ok {
			out[name] = v
		}
	}
	return out
}

// OptionUint is a node's numeric option key, as the command line or a
// reopen left it.
func OptionUint(o NodeOptions, key string) (uint64, bool) {
	switch n := o[key].(type) {
	case json.Number:
		if v, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
			return v, true
		}
	case uint64:
		return n, true
	case int:
		return uint64(n), true
	case float64:
		return uint64(n), true
	}
	return 0, false
}
