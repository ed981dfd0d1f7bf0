package cluster

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{},
		{API: "http://10.0.0.7:8081"},
		{API: "http://b:8081", Owned: []int{0, 3, 7, 1<<31 - 1}},
	} {
		b := AppendMeta(nil, &m)
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("DecodeMeta(%s) = %v", hex.Dump(b), err)
		}
		if got.API != m.API || !slices.Equal(got.Owned, m.Owned) {
			t.Fatalf("round trip of %v = %v\n%s", m, got, hex.Dump(b))
		}
		if again := AppendMeta(nil, &got); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding of %v differs:\n%s\n%s", m, hex.Dump(b), hex.Dump(again))
		}
	}
}

func TestMetaErrors(t *testing.T) {
	f := func(in []byte, want string) {
		t.Helper()
		_, err := DecodeMeta(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("DecodeMeta(%x) = %v; want an error containing %q", in, err, want)
		}
	}
	f(nil, "truncated")
	f([]byte{2, 0, 0}, "version 2; this build reads 1")
	f([]byte{1, 5, 'h'}, "truncated")
	f([]byte{1, 0, 3, 1}, "count 3 cannot fit")
	f([]byte{1, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x08}, "partition 2147483648 at index 0 out of range")
	f([]byte{1, 0, 0, 9}, "1 trailing bytes")
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(AppendMeta(nil, &Meta{API: "http://127.0.0.1:8081", Owned: []int{0, 2, 5}}))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		if again := AppendMeta(nil, &m); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %v, which encodes to %x", b, m, again)
		}
	})
}

func TestAssign(t *testing.T) {
	parts8 := []int{0, 1, 2, 3, 4, 5, 6, 7}
	for _, tc := range []struct {
		name  string
		ids   []string
		owned map[string][]int
		parts []int
		want  map[string][]int
	}{
		{"one member takes all", []string{"a"}, nil, parts8, map[string][]int{"a": parts8}},
		{"two fresh members split", []string{"b", "a"}, nil, parts8, map[string][]int{"a": {0, 1, 2, 3}, "b": {4, 5, 6, 7}}},
		{"sticky: each keeps its own", []string{"a", "b"}, map[string][]int{"a": {1, 3, 5, 7}, "b": {0, 2, 4, 6}}, parts8,
			map[string][]int{"a": {1, 3, 5, 7}, "b": {0, 2, 4, 6}}},
		{"survivor takes the lost member's", []string{"b"}, map[string][]int{"b": {0, 2, 4, 6}}, parts8, map[string][]int{"b": parts8}},
		{"newcomer gets the half the survivor gives up", []string{"b", "c"}, map[string][]int{"b": parts8}, parts8,
			map[string][]int{"b": {0, 1, 2, 3}, "c": {4, 5, 6, 7}}},
		{"uneven: the bigger share to the one that owned more", []string{"a", "b"}, map[string][]int{"b": {0, 1, 2}}, []int{0, 1, 2},
			map[string][]int{"a": {2}, "b": {0, 1}}},
		{"claims of one partition by two: first by id wins", []string{"a", "b"}, map[string][]int{"a": {0}, "b": {0, 1}}, []int{0, 1},
			map[string][]int{"a": {0}, "b": {1}}},
		{"partitions gone from the topic are not kept", []string{"a"}, map[string][]int{"a": {9}}, []int{0}, map[string][]int{"a": {0}}},
		{"more members than partitions", []string{"a", "b", "c"}, nil, []int{0, 1}, map[string][]int{"a": {0}, "b": {1}}},
	} {
		got := assign(tc.ids, tc.owned, tc.parts)
		norm := func(m map[string][]int) map[string][]int {
			out := map[string][]int{}
			for k, v := range m {
				if len(v) > 0 {
					out[k] = v
				}
			}
			return out
		}
		if !reflect.DeepEqual(norm(got), norm(tc.want)) {
			t.Fatalf("%s: assign = %v; want %v", tc.name, got, tc.want)
		}
	}
}
