package profile

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// masked returns a copy of p holding only parts (what Decode(parts) gives).
func masked(p *Profile, parts Parts) *Profile {
	q := &Profile{FirstSeen: p.FirstSeen, LastSeen: p.LastSeen, LastRecv: p.LastRecv}
	if parts&PartIdentity != 0 {
		q.Email, q.EmailTS, q.Customer, q.CustomerTS = p.Email, p.EmailTS, p.Customer, p.CustomerTS
	}
	for d := range NumDims {
		if parts&PartDim(Dim(d)) != 0 {
			q.Dims[d] = p.Dims[d]
		}
	}
	if parts&PartEvents != 0 {
		q.Events = p.Events
	}
	if parts&PartTraits != 0 {
		q.Traits = p.Traits
	}
	if parts&PartCart != 0 {
		q.Cart = p.Cart
	}
	if parts&PartOrders != 0 {
		q.Orders = p.Orders
	}
	return q
}

func TestPartialDecode(t *testing.T) {
	samples := sampleProfiles(t)
	var pd PartialDecoder
	for i, p := range samples {
		data := AppendProfile(nil, p)
		for parts := Parts(0); parts <= PartAll; parts++ {
			// decode after another profile: nothing may leak
			if _, err := pd.Decode(AppendProfile(nil, samples[3]), PartAll); err != nil {
				t.Fatal(err)
			}
			got, err := pd.Decode(data, parts)
			if err != nil {
				t.Fatalf("profile %d, parts %#x: %s\n%s", i, parts, err, hex.Dump(data))
			}
			want := masked(p, parts)
			if d := diffProfiles(got, want); d != "" {
				t.Fatalf("profile %d, parts %#x: decoded (left) differs from the parts of the encoded (right):\n%s", i, parts, d)
			}
			if g, w := AppendProfile(nil, got), AppendProfile(nil, want); !bytes.Equal(g, w) {
				t.Fatalf("profile %d, parts %#x: re-encoding differs:\n%s\nwant\n%s", i, parts, hex.Dump(g), hex.Dump(w))
			}
		}
		// With PartAll every proper prefix and a trailing byte are refused;
		// with fewer parts, what Decode reads before the cut is right.
		for n := range len(data) {
			if _, err := pd.Decode(data[:n], PartAll); err == nil {
				t.Fatalf("profile %d: a prefix of %d of %d bytes decoded", i, n, len(data))
			}
			for _, parts := range []Parts{0, PartDim(DimAge), PartEvents | PartIdentity, PartCart} {
				got, err := pd.Decode(data[:n], parts)
				if err != nil {
					continue
				}
				if d := diffProfiles(got, masked(p, parts)); d != "" {
					t.Fatalf("profile %d, parts %#x: a prefix of %d of %d bytes decoded wrong:\n%s", i, parts, n, len(data), d)
				}
			}
		}
		if _, err := pd.Decode(append(data[:len(data):len(data)], 0), PartAll); err == nil {
			t.Fatalf("profile %d: a trailing byte decoded", i)
		}
	}
}

func TestPartialDecodeDoesNotAllocate(t *testing.T) {
	data := AppendProfile(nil, sampleProfiles(t)[4])
	var pd PartialDecoder
	for _, parts := range []Parts{PartDim(DimBrand) | PartDim(DimAge), PartAll} {
		if n := testing.AllocsPerRun(50, func() {
			if _, err := pd.Decode(data, parts); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("parts %#x: %v allocations per Decode; want 0", parts, n)
		}
	}
}

func TestPartDim(t *testing.T) {
	seen := Parts(0)
	for d := range NumDims {
		p := PartDim(Dim(d))
		if p == 0 || p&seen != 0 || p&^PartAll != 0 || p&(PartIdentity|PartEvents|PartTraits|PartCart|PartOrders) != 0 {
			t.Errorf("PartDim(%s) = %#x: want a bit of its own within PartAll", Dim(d), p)
		}
		seen |= p
	}
	if p := PartDim(NumDims); p != 0 {
		t.Errorf("PartDim(NumDims) = %#x; want 0", p)
	}
}

// FuzzPartialDecode checks Decode against DecodeProfile on any data: with
// PartAll they accept the same and give the same; with any parts Decode
// accepts what DecodeProfile does and gives its parts; nothing panics.
func FuzzPartialDecode(f *testing.F) {
	for _, p := range sampleProfiles(f) {
		data := AppendProfile(nil, p)
		f.Add(data, uint16(PartAll))
		f.Add(data, uint16(PartDim(DimAge)|PartDim(DimBrand)))
		f.Add(data[:len(data)/2], uint16(PartEvents))
	}
	var p Profile
	var pd PartialDecoder
	f.Fuzz(func(t *testing.T, data []byte, parts uint16) {
		ps := Parts(parts) & PartAll
		err := DecodeProfile(&p, data)
		all, errAll := pd.Decode(data, PartAll)
		if (err == nil) != (errAll == nil) {
			t.Fatalf("DecodeProfile: %v; Decode(PartAll): %v\n%s", err, errAll, hex.Dump(data))
		}
		if err != nil {
			_, _ = pd.Decode(data, ps)
			return
		}
		if d := diffProfiles(all, &p); d != "" {
			t.Fatalf("Decode(PartAll) (left) differs from DecodeProfile (right):\n%s", d)
		}
		got, err := pd.Decode(data, ps)
		if err != nil {
			t.Fatalf("Decode(%#x) refused what DecodeProfile accepts: %s\n%s", ps, err, hex.Dump(data))
		}
		if g, w := AppendProfile(nil, got), AppendProfile(nil, masked(&p, ps)); !bytes.Equal(g, w) {
			t.Fatalf("Decode(%#x) differs:\n%s\nwant\n%s", ps, hex.Dump(g), hex.Dump(w))
		}
	})
}

// BenchmarkPartialDecode compares DecodeProfile with Decode of the two
// dimensions a rule such as `top(age) == "0-3" and interest(brand, "x") > 1`
// reads.
func BenchmarkPartialDecode(b *testing.B) {
	data := AppendProfile(nil, sampleProfiles(b)[3])
	b.Run("DecodeProfile", func(b *testing.B) {
		var p Profile
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := DecodeProfile(&p, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tc := range []struct {
		name  string
		parts Parts
	}{{"age+brand", PartDim(DimAge) | PartDim(DimBrand)}, {"all", PartAll}} {
		b.Run(tc.name, func(b *testing.B) {
			var pd PartialDecoder
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pd.Decode(data, tc.parts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
