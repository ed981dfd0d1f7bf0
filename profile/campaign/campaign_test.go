package campaign

import (
	"bytes"
	"reflect"
	"testing"
)

func TestParseSpec(t *testing.T) {
	f := func(body, want string) {
		t.Helper()
		_, err := ParseSpec("shop", []byte(body))
		if got := errText(err); got != want {
			t.Errorf("ParseSpec(%s)\n got %s\nwant %s", body, got, want)
		}
	}
	f(`{"name":"p","arms":[{"name":"a","segment":"s"}],"window":"7d"}`, "")
	f(`{"name":"p","arms":[{"name":"a","list":"l","variants":["10%","20%"]}],"holdout":50,"window":"36h","goal":"purchase"}`, "")
	f(`{"name":"p","arms":[{"name":"a","segment":"s"}],"window":"7d","x":1}`, `invalid campaign JSON: json: unknown field "x"`)
	f(`{"name":"p"} {}`, `invalid campaign JSON: more than one object`)
	f(`{"name":"","arms":[],"window":"7d"}`, `invalid campaign name "": want 1..128 characters`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s"}],"holdout":51,"window":"7d"}`, `invalid holdout 51: want a percentage from 0 to 50`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s"}],"holdout":-1,"window":"7d"}`, `invalid holdout -1: want a percentage from 0 to 50`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s"}]}`, `invalid window "": want the conversion window such as 7d`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s"}],"window":"0s"}`, `invalid window "0s": want more than 0 and at most 365d`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s"}],"window":"7d","goal":"view"}`, `invalid goal "view": want "purchase" (the one goal counted)`)
	f(`{"name":"p","arms":[],"window":"7d"}`, `invalid arms: 0 given; want 1..16`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s"},{"name":"a","list":"l"}],"window":"7d"}`, `invalid arm name "a": given twice`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s","list":"l"}],"window":"7d"}`, `invalid arm "a": want exactly one of "segment" and "list"`)
	f(`{"name":"p","arms":[{"name":"a"}],"window":"7d"}`, `invalid arm "a": want exactly one of "segment" and "list"`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s s"}],"window":"7d"}`, `arm "a": invalid segment name "s s": want letters, digits, _, - and . only`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s","variants":["x"]}],"window":"7d"}`, `invalid variants of arm "a": 1 given; want 2..16 (or none)`)
	f(`{"name":"p","arms":[{"name":"a","segment":"s","variants":["x","x"]}],"window":"7d"}`, `invalid variant "x" of arm "a": given twice`)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestHeadRoundTrip(t *testing.T) {
	c := &Campaign{ID: 7, Site: "shop", Name: "p", Sent: 1_790_000_000_000, Window: 7 * 86400000, Holdout: 12.5, Goal: GoalPurchase, SecretGen: 1,
		Arms: []Arm{
			{Name: "a", Segment: "s", Variants: []string{"10%", "20%"}, VariantTreated: []uint64{5, 4}, Members: 12, NoEmail: 1, Treated: 9, Control: 2},
			{Name: "b", List: "l", Members: 3, InEarlierArm: 1, Treated: 2},
		}}
	v := appendHead(nil, c)
	got := &Campaign{ID: 7}
	if err := decodeHead(got, v); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("decodeHead(%x) = %+v, %v; want %+v", v, got, err, c)
	}
	for i := range v {
		if err := decodeHead(&Campaign{}, v[:i]); err == nil {
			t.Errorf("decodeHead of %d of %d bytes: no error", i, len(v))
		}
	}
	r := Recipient{Number: 3, Email: []byte("a@x.io"), Cell: Cell{Arm: 1, Variant: 2}, MAC: [macLen]byte{1, 2, 3}}
	var back Recipient
	if err := decodeRecipient(&back, appendRecipient(nil, &r)); err != nil || !bytes.Equal(back.Email, r.Email) || back.Cell != r.Cell || back.MAC != r.MAC {
		t.Errorf("recipient round trip: %+v, %v", back, err)
	}
	cnt := Counters{Opened: 1, Clicked: 2, Converted: 3, Orders: 4, Revenue: 5.5}
	var cb Counters
	if err := DecodeCounters(&cb, AppendCounters(nil, &cnt)); err != nil || cb != cnt {
		t.Errorf("counters round trip: %+v, %v", cb, err)
	}
	cell := Cell{Arm: 3, Control: true}
	if got, err := decodeCounterKey(CounterKey(nil, 9, cell, 5), 9); err != nil || got != cell {
		t.Errorf("counter key round trip: %+v, %v", got, err)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		id uint64
		n  uint32
	}{{1, 0}, {127, 128}, {1 << 40, 1<<32 - 1}, {1<<64 - 1, 5}} {
		mac := [macLen]byte{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}
		tok := AppendToken(nil, tc.id, tc.n, &mac)
		id, n, m, err := ParseToken(tok)
		if err != nil || id != tc.id || n != tc.n || m != mac {
			t.Errorf("ParseToken(%s) = %d %d %x %v; want %d %d", tok, id, n, m, err, tc.id, tc.n)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	mac := [macLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	f.Add(AppendToken(nil, 1, 0, &mac))
	f.Add(AppendToken(nil, 1<<40, 1<<31, &mac))
	f.Add([]byte("AQEDk817UAjFulOPcQ"))
	f.Add([]byte("AQEDk817UAjFulOPcR"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, tok []byte) {
		id, n, m, err := ParseToken(tok)
		if err != nil {
			return
		}
		// A token that parses has one spelling: its own.
		if again := AppendToken(nil, id, n, &m); !bytes.Equal(again, tok) {
			t.Fatalf("ParseToken(%q) = %d %d %x, which spells %q", tok, id, n, m, again)
		}
	})
}

// TestEngagementValue: version 2 round-trips; version 1 (before
// conversions) reads with no conversion; a bad value is an error naming
// what is wrong.
func TestEngagementValue(t *testing.T) {
	e := engagement{opened: 5, clicked: 7, converted: 9, orders: []uint64{1, 2, 1 << 63}}
	v := appendEngagement(nil, &e)
	var got engagement
	if err := decodeEngagement(&got, v); err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, e)
	}
	if err := decodeEngagement(&got, []byte{1, 10, 14}); err != nil || got.opened != 5 || got.clicked != 7 || got.converted != 0 || len(got.orders) != 0 {
		t.Fatalf("version 1: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		v    []byte
		want string
	}{
		{[]byte{3, 0, 0}, "version 3; this build reads 1 and 2"},
		{append(appendEngagement(nil, &engagement{}), 0), "1 trailing bytes"},
		{[]byte{2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1}, "order key 0x1 after 0x2: not ascending"},
		{append([]byte{2, 0, 0, 0, 65}, make([]byte, 65*8)...), "65 order keys; at most 64"},
	} {
		if err := decodeEngagement(&got, tc.v); err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("decode %x: %v; want …%s…", tc.v, err, tc.want)
		}
	}
}

// FuzzDecodeEngagement: any value decodeEngagement accepts re-encodes to
// the same bytes (version 2), or is a version 1 value.
func FuzzDecodeEngagement(f *testing.F) {
	f.Add(appendEngagement(nil, &engagement{opened: 5, clicked: 7, converted: 9, orders: []uint64{1, 2}}))
	f.Add([]byte{1, 10, 14})
	f.Add([]byte{2, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		var e engagement
		if err := decodeEngagement(&e, v); err != nil {
			return
		}
		again := appendEngagement(nil, &e)
		if v[0] == 1 {
			v = appendEngagement(nil, &engagement{opened: e.opened, clicked: e.clicked})
		}
		if !bytes.Equal(again, v) {
			t.Fatalf("decoded %+v from %x, which encodes to %x", e, v, again)
		}
	})
}
