package manpage

import (
	"reflect"
	"strings"
)

// Key is one attribute or block of an HCL file's schema.
type Key struct {
	Path  string // "limits.per_vm_per_hour"
	Block bool
	Type  string // "string", "bool", "number", "list of string", "block"
}

// HCLKeys walks the hcl tags of the struct v decodes into (gohcl's
// convention: "name,optional", "name,block", ",remain"), depth first.
func HCLKeys(v any) []Key {
	return walk(reflect.TypeOf(v), "")
}

func walk(t reflect.Type, prefix string) []Key {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem() // a block that may repeat (budget "a" {...}) is a slice
	}
	var keys []Key
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if name == "" || kind == "remain" || kind == "label" {
			continue
		}
		if kind == "block" {
			keys = append(keys, Key{Path: prefix + name, Block: true, Type: "block"})
			keys = append(keys, walk(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, Key{Path: prefix + name, Type: typeName(f.Type)})
	}
	return keys
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Float64, reflect.Float32:
		return "number"
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	}
	return t.Kind().String()
}
