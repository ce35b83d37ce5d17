package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/listset"
)

// The hcl tags of the Config structs name each key as it is written in the file. A tag "name,squash" on an
// embedded struct puts its keys at the parent's level; "name,packets" on a Limit keeps only its pps and burst
// (the new_sources block counts packets only). A struct field is a block whose keys are its tagged fields; a slice
// of blocks (interface, rule, class, feed, list files) is one key: the agent reconciles such a list as a whole.

// Keys returns the dotted name of every key of the schema ("mode", "limits.default.pps", "limits.rule", ...), in
// the order of the Config structs. Labelled blocks are one key each ("interface", "limits.rule", "feed").
func Keys() []string {
	var keys []string
	walkKeys("", reflect.TypeFor[Config](), "", func(key string, _ []int) { keys = append(keys, key) })
	return keys
}

// Changed returns the keys, as named by Keys, whose values differ between a and b. Positions in the file
// (hcl.Range) are not values: moving a block does not change it.
func Changed(a, b *Config) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var keys []string
	walkKeys("", va.Type(), "", func(key string, index []int) {
		if !equalValues(va.FieldByIndex(index), vb.FieldByIndex(index)) {
			keys = append(keys, key)
		}
	})
	return keys
}

// walkKeys calls fn with the key and field index of every leaf key of struct type t, whose keys are prefixed by
// prefix; only, when set, keeps only the leaf keys of those names ("pps+burst").
func walkKeys(prefix string, t reflect.Type, only string, fn func(key string, index []int)) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("hcl")
		if !ok {
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		key := prefix + name
		sub := func(k string, index []int) { fn(k, append([]int{i}, index...)) }
		switch {
		case opt == "squash":
			walkKeys(prefix, f.Type, only, sub)
		case f.Type.Kind() == reflect.Struct:
			keep := ""
			if opt == "packets" {
				keep = "pps+burst"
			}
			walkKeys(key+".", f.Type, keep, sub)
		case only == "" || strings.Contains("+"+only+"+", "+"+name+"+"):
			fn(key, []int{i})
		}
	}
}

var (
	rangeType = reflect.TypeFor[hcl.Range]()
	keysType  = reflect.TypeFor[[]listset.Key]()
)

// equalValues compares two values of a config field, ignoring hcl.Range fields; an empty slice or map equals
// a nil one.
func equalValues(a, b reflect.Value) bool {
	switch {
	case a.Type() == rangeType:
		return true
	case a.Kind() == reflect.Struct && a.Type().PkgPath() == rangeOwner:
		for i := range a.NumField() {
			if !equalValues(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case a.Type() == keysType:
		// A list file's million entries: compared as values, not one reflect.Value each.
		return slices.Equal(a.Interface().([]listset.Key), b.Interface().([]listset.Key))
	case a.Kind() == reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalValues(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case a.Kind() == reflect.Map && a.Len() == 0 && b.Len() == 0:
		return true // nil and empty are the same setting
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// rangeOwner is this package's path: its structs are compared field by field, so their Range fields are skipped.
var rangeOwner = reflect.TypeFor[Config]().PkgPath()
