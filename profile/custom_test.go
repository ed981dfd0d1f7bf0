package profile

import (
	"testing"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/tracker/event"
)

// TestApplyCustom: a custom event counts under its type, whatever its
// name, and scores nothing by default (its weight is 0).
func TestApplyCustom(t *testing.T) {
	cfg := DefaultConfig()
	var p Profile
	for i, name := range []string{"Newsletter Signup", "Coupon Used", "Newsletter Signup"} {
		e := event.Event{Type: event.TypeCustom, Name: name, TS: Landmark + int64(i),
			HasProduct: true, Product: event.Product{ID: "sku-1", Brand: "Hipp"}}
		if changes := p.Apply(&e, cfg, e.TS, nil); len(changes) != 0 {
			t.Fatalf("custom %q: got score changes %+v; want none", name, changes)
		}
	}
	s := p.Events[event.TypeCustom]
	if s.Count != 3 || s.First != Landmark || s.Last != Landmark+2 {
		t.Fatalf("got custom stats %+v; want count 3 from %d to %d", s, Landmark, Landmark+2)
	}
	var back Profile
	if err := DecodeProfile(&back, AppendProfile(nil, &p)); err != nil || back.Events[event.TypeCustom].Count != 3 {
		t.Fatalf("round trip: got error %v, custom count %d; want 3", err, back.Events[event.TypeCustom].Count)
	}
}

// TestDecodeProfileBeforeCustom decodes a profile stored before the custom
// type existed (7 event types): it reads as one without custom events, and
// is written back with 8.
func TestDecodeProfileBeforeCustom(t *testing.T) {
	old := []byte{FormatVersion}
	old = codec.AppendVarint(old, Landmark) // first_seen
	old = codec.AppendVarint(old, Landmark) // last_seen
	old = codec.AppendVarint(old, Landmark) // last_recv
	old = codec.AppendString(old, "")       // email
	old = codec.AppendVarint(old, 0)        // email_ts
	old = codec.AppendString(old, "")       // customer
	old = codec.AppendVarint(old, 0)        // customer_ts
	old = codec.AppendUvarint(old, 0)       // no dimensions
	old = codec.AppendUvarint(old, 7)       // ntypes as before custom
	for t := range event.Type(7) {
		if t != event.TypeView {
			old = codec.AppendUvarint(old, 0)
			continue
		}
		old = codec.AppendUvarint(old, 1)       // count
		old = codec.AppendVarint(old, Landmark) // first
		old = codec.AppendUvarint(old, 0)       // span
		old = codec.AppendUvarint(old, 1)       // one recent
		old = codec.AppendUvarint(old, 0)       // gap
	}
	old = append(old, 0, 0, 0) // traits, cart, orders
	var p Profile
	if err := DecodeProfile(&p, old); err != nil {
		t.Fatalf("cannot decode a 7-type profile: %s", err)
	}
	if p.Events[event.TypeView].Count != 1 || p.Events[event.TypeCustom].Count != 0 {
		t.Fatalf("got view %d, custom %d events; want 1 and 0", p.Events[event.TypeView].Count, p.Events[event.TypeCustom].Count)
	}
	var back Profile
	if err := DecodeProfile(&back, AppendProfile(nil, &p)); err != nil || back.Events[event.TypeView].Count != 1 {
		t.Fatalf("re-encoded: got error %v, view count %d; want 1", err, back.Events[event.TypeView].Count)
	}
}
