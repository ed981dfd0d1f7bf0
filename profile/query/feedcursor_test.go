package query

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/storage/state"
)

func TestFeedCursorRoundTrip(t *testing.T) {
	for _, c := range []feedCursor{
		{},
		{{Partition: 0, Offset: 0, Ord: 0}},
		{{Partition: 0, Offset: 12, Ord: 3}, {Partition: 2, Offset: 1 << 40, Ord: state.VisitOrdinals + 7}, {Partition: maxPartition, Offset: math.MaxInt64, Ord: math.MaxUint32}},
	} {
		text := appendFeedCursor(nil, c)
		got, err := decodeFeedCursor(text)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c) {
			t.Errorf("cursor %v: %s decodes to %v, %v", c, text, got, err)
		}
	}
}

func TestDecodeFeedCursorRefuses(t *testing.T) {
	enc := func(raw ...byte) string { return string(appendRaw(raw)) }
	for _, c := range []struct {
		text string
		want cursorError
	}{
		{"12", errCursorText},    // a node's seq: "12" is not whole bytes
		{"AQ\nA", errCursorText}, // the decoder would skip the line break
		{"AQA=", errCursorText},  // padding
		{"AR", errCursorText},    // bits past the last byte
		{strings.Repeat("A", maxFeedCursorText+1), errCursorLong},
		{enc(2, 0), errCursorVersion},
		{enc(1), errCursorTruncated},                                    // no count
		{enc(1, 1, 0, 0), errCursorTruncated},                           // a position cut short
		{enc(1, 0, 0), errCursorTruncated},                              // trailing bytes
		{enc(1, 1, 0x80, 0x00, 0, 0), errCursorTruncated},               // a non-minimal varint
		{enc(1, 2, 3, 0, 0, 3, 0, 0), errCursorOrder},                   // a partition twice
		{enc(1, 2, 3, 0, 0, 1, 0, 0), errCursorOrder},                   // descending
		{enc(1, 1, 0x81, 0x80, 0x04, 0, 0), errCursorRange},             // partition 65537
		{enc(1, 1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10), errCursorRange}, // ordinal 2^32
	} {
		_, err := decodeFeedCursor([]byte(c.text))
		if !errors.Is(err, c.want) {
			t.Errorf("cursor %q: error %v; want %q", c.text, err, c.want)
		}
	}
}

func appendRaw(raw []byte) []byte { return base64.RawURLEncoding.AppendEncode(nil, raw) }

func TestFeedCursorSet(t *testing.T) {
	var c feedCursor
	for _, s := range []state.Source{{Partition: 3, Offset: 5}, {Partition: 1, Offset: 2}, {Partition: 3, Offset: 9, Ord: 1}, {Partition: 7}} {
		c = c.set(s)
	}
	if want := "[{1 2 0} {3 9 1} {7 0 0}]"; fmt.Sprint(c) != want {
		t.Errorf("set: got %v; want %s", c, want)
	}
	if got := c.from(3); got != (state.Source{Partition: 3, Offset: 9, Ord: 1}) {
		t.Errorf("from(3): got %+v", got)
	}
	if got := c.from(2); got != (state.Source{Partition: 2, Offset: -1}) {
		t.Errorf("from(2): got %+v; want its start", got)
	}
}

// An owner's change row: its key orders by at (negative too), then
// partition, and carries the source back.
func TestChangeRowKey(t *testing.T) {
	row := func(at int64, p int32, off int64, ord uint32) []byte {
		c := membership.Change{At: at, Src: state.Source{Partition: p, Offset: off, Ord: ord}}
		return c.AppendJSON(appendChangeRowKey(nil, &c))
	}
	ordered := [][]byte{row(-5, 9, 1, 0), row(0, 0, 1, 0), row(0, 1, 0, 0), row(1769821200000, 0, 7, state.VisitOrdinals), row(1769821200000, 3, 1, 0)}
	for i := 1; i < len(ordered); i++ {
		if cmpChangeRows(ordered[i-1], ordered[i]) >= 0 {
			t.Errorf("row %d does not order before row %d", i-1, i)
		}
	}
	src, ok := changeRowSource(append(row(12, 3, 1<<40, state.VisitOrdinals+2), '\n'))
	if want := (state.Source{Partition: 3, Offset: 1 << 40, Ord: state.VisitOrdinals + 2}); !ok || src != want {
		t.Errorf("source: got %+v %v; want %+v", src, ok, want)
	}
	for _, bad := range []string{"", "zz", strings.Repeat("0", changeRowKey-1) + "x{}\n", strings.Repeat("g", changeRowKey-1) + " {}\n"} {
		if _, ok := changeRowSource([]byte(bad)); ok {
			t.Errorf("row %q: a source", bad)
		}
	}
}

// FuzzDecodeFeedCursor feeds decodeFeedCursor what clients may send: no
// panic, a cursorError for what it refuses, and what it accepts
// re-encodes to the same text.
func FuzzDecodeFeedCursor(f *testing.F) {
	f.Add(string(appendFeedCursor(nil, feedCursor{{Partition: 0, Offset: 12, Ord: 3}, {Partition: 2, Offset: 1 << 40, Ord: state.VisitOrdinals}})))
	f.Add(string(appendFeedCursor(nil, nil)))
	f.Add("12")
	f.Add("AQIDAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeFeedCursor([]byte(s))
		if err != nil {
			if ce := cursorError(""); !errors.As(err, &ce) {
				t.Fatalf("cursor %q: error %v is no cursorError", s, err)
			}
			return
		}
		if again := string(appendFeedCursor(nil, c)); again != s {
			t.Fatalf("cursor %q decodes to %v, which encodes to %q", s, c, again)
		}
	})
}

// BenchmarkMergeChanges merges owners' change rows into a page, as a
// node of a build group answers the feed.
func BenchmarkMergeChanges(b *testing.B) {
	for _, owners := range []int{2, 4} {
		b.Run(fmt.Sprintf("owners=%d", owners), func(b *testing.B) {
			const perOwner = 5000
			streams := make([][]byte, owners)
			for i := range perOwner * owners {
				p := i % owners
				c := membership.Change{Site: "shop", Segment: "fans", At: 1769821200000 + int64(i/7), Why: "event", Facts: `{"count(view)":3}`, Entered: true,
					Src: state.Source{Partition: int32(p), Offset: int64(i), Ord: 0}}
				line := append(c.AppendJSON(appendChangeRowKey(nil, &c)), '\n')
				streams[p] = append(streams[p], line...)
			}
			pg := &changePage{}
			m := &merger{cmp: cmpChangeRows, write: pg.write}
			benchMerge(b, streams, perOwner*owners, m, func() { *pg = changePage{cur: pg.cur[:0]} })
		})
	}
}
