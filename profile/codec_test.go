package profile

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/tracker/event"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus (testdata/fuzz/FuzzDecodeProfile)")

// sampleProfiles returns profiles built from random events, including an
// empty one and one with evictions.
func sampleProfiles(t testing.TB) []*Profile {
	cfg := DefaultConfig()
	out := []*Profile{{}}
	for seed, n := range []int{1, 5, 40, 300} {
		r := rand.New(rand.NewPCG(uint64(seed), 99))
		p := &Profile{}
		for _, e := range genEvents(r, n) {
			p.Apply(&e, cfg, e.TS+5, nil)
		}
		out = append(out, p)
	}
	small := DefaultConfig()
	if err := small.SetTopK("2"); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	p := &Profile{}
	for _, e := range genEvents(r, 100) {
		p.Apply(&e, small, e.TS, nil)
	}
	return append(out, p)
}

func TestCodecRoundTrip(t *testing.T) {
	var q Profile
	for i, p := range sampleProfiles(t) {
		data := AppendProfile(nil, p)
		// decode into a profile that held another one: nothing may leak
		if err := DecodeProfile(&q, AppendProfile(nil, sampleProfiles(t)[3])); err != nil {
			t.Fatal(err)
		}
		if err := DecodeProfile(&q, data); err != nil {
			t.Fatalf("profile %d: %s\n%s", i, err, hex.Dump(data))
		}
		if d := diffProfiles(&q, p); d != "" {
			t.Fatalf("profile %d: decoded (left) differs from encoded (right):\n%s\n%s", i, d, hex.Dump(data))
		}
		if again := AppendProfile(nil, &q); !bytes.Equal(again, data) {
			t.Fatalf("profile %d: re-encoding differs:\n%s\nwant\n%s", i, hex.Dump(again), hex.Dump(data))
		}
		// every proper prefix is refused
		for n := range len(data) {
			if err := DecodeProfile(&q, data[:n]); err == nil {
				t.Fatalf("profile %d: prefix of %d/%d bytes accepted", i, n, len(data))
			}
		}
		if err := DecodeProfile(&q, append(data[:len(data):len(data)], 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
			t.Fatalf("profile %d with a trailing byte: error %v", i, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{nil, "empty"},
		{[]byte{2}, "version 2"},
		{[]byte{1, 0x80}, "at byte 1: first seen: truncated varint"},
		{[]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, "overflows"},
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0, 6}, "at byte 8: dimension count: 6 exceeds the limit 5"},
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 'b', 0, 1, 'a', 0}, `at byte 13: brand value "a": empty or not above`},
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 'b', 4}, "unknown bits"},
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 'b', 1, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f}, "not finite"},
	} {
		var p Profile
		err := DecodeProfile(&p, tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeProfile(%x): error %v; want one containing %q", tc.data, err, tc.want)
		}
		if !p.Empty() || len(p.Dims[DimBrand]) != 0 {
			t.Errorf("DecodeProfile(%x) failed but left %+v", tc.data, p)
		}
	}
}

// FuzzDecodeProfile feeds DecodeProfile arbitrary bytes: it never panics,
// and an accepted profile re-encodes stably (encode∘decode is idempotent),
// renders valid JSON and takes further events.
func FuzzDecodeProfile(f *testing.F) {
	for _, p := range sampleProfiles(f) {
		data := AppendProfile(nil, p)
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	cfg := DefaultConfig()
	var p, q Profile
	var enc1, enc2, js []byte
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := DecodeProfile(&p, data); err != nil {
			return
		}
		enc1 = AppendProfile(enc1[:0], &p)
		if err := DecodeProfile(&q, enc1); err != nil {
			t.Fatalf("cannot decode the re-encoding of an accepted profile: %s\n%s", err, hex.Dump(enc1))
		}
		enc2 = AppendProfile(enc2[:0], &q)
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("re-encoding is not stable:\n%s\nthen\n%s", hex.Dump(enc1), hex.Dump(enc2))
		}
		js = p.AppendJSON(js[:0], cfg, t0)
		if !json.Valid(js) {
			t.Fatalf("invalid JSON:\n%s", js)
		}
		e := view(t0, event.Product{ID: "p1", Brand: "acme", Category: "a/b", Price: 3, HasPrice: true})
		p.Apply(&e, cfg, t0, nil)
		if err := DecodeProfile(&q, AppendProfile(enc1[:0], &p)); err != nil {
			t.Fatalf("cannot decode after Apply: %s", err)
		}
	})
}

// TestWriteFuzzCorpus writes the seed corpus of FuzzDecodeProfile with
// -update; it checks that the stored corpus still decodes otherwise.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeProfile")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, p := range sampleProfiles(t) {
			data := AppendProfile(nil, p)
			for j, b := range [][]byte{data, data[:len(data)*2/3]} {
				body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("profile%d_%d", i, j)), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "profile*_0"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus in %s (run go test -run TestWriteFuzzCorpus -update): %v", dir, err)
	}
}
