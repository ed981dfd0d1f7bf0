package campaign

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/affinityhq/affinity/internal/codec"
)

// seedRecord is a campaign record of two arms (one with variants) and
// three recipients.
func seedRecord() []byte {
	c := &Campaign{ID: 7, Site: "shop", Name: "p", Sent: 1000, Window: 5000, Holdout: 20, Goal: GoalPurchase, SecretGen: 7,
		Arms: []Arm{{Name: "a", Segment: "s", Variants: []string{"x", "y"}, Members: 3, Treated: 2, VariantTreated: []uint64{1, 1}},
			{Name: "b", List: "l", Members: 1, Control: 1}}}
	var recips []byte
	for i, r := range []Recipient{{Email: []byte("a@x.io"), Cell: Cell{Variant: 1}}, {Email: []byte("b@x.io"), Cell: Cell{Variant: 2}}, {Email: []byte("c@x.io"), Cell: Cell{Arm: 1, Control: true}}} {
		r.MAC[0] = byte(i)
		recips = codec.AppendString(recips, string(appendRecipient(nil, &r)))
	}
	return appendRecord(nil, c, bytes.Repeat([]byte{9}, secretLen), 3, recips)
}

// FuzzDecodeCampaignRecord: a campaign record of the definitions topic
// (another node's bytes) that decodeRecord accepts re-encodes to the
// same bytes; anything else is an error, never a panic.
func FuzzDecodeCampaignRecord(f *testing.F) {
	rec := seedRecord()
	f.Add(rec)
	f.Add(rec[:len(rec)/2])
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, rec []byte) {
		c, secret, recips, err := decodeRecord(7, rec)
		if err != nil {
			return
		}
		var vals []byte
		for _, v := range recips {
			vals = codec.AppendString(vals, string(v))
		}
		if again := appendRecord(nil, c, secret, uint32(len(recips)), vals); !bytes.Equal(again, rec) {
			t.Fatalf("decoded %+v from %x, which encodes to %x", c, rec, again)
		}
	})
}

// FuzzSumCounterRows: counter rows from another node either sum or are
// an error, never a panic.
func FuzzSumCounterRows(f *testing.F) {
	rows := []byte{counterRowsVersion}
	for p := range uint32(2) {
		k := appendCounterKey(nil, 7, Cell{Arm: 1, Variant: 2}, p)
		rows = codec.AppendString(codec.AppendString(rows, string(k)), string(AppendCounters(nil, &Counters{Opened: 3, Orders: 1, Revenue: 2.5})))
	}
	f.Add(rows)
	f.Add(rows[:len(rows)-4])
	f.Add([]byte{counterRowsVersion})
	c := &Campaign{ID: 7}
	f.Fuzz(func(t *testing.T, rows []byte) {
		sums, err := SumCounterRows(c, rows)
		if err == nil && len(rows) == 1 && len(sums) != 0 {
			t.Fatalf("no rows summed to %v", sums)
		}
	})
}

// FuzzRecordHead: what a reader of heads only keeps of a campaign record
// (the first bytes RecordHeadIn accepts) decodes to the head and secret
// the whole record gives; anything else is an error, never a panic.
func FuzzRecordHead(f *testing.F) {
	rec := seedRecord()
	f.Add(rec)
	f.Add(rec[:40])
	f.Add(rec[:1+secretLen+1])
	f.Fuzz(func(t *testing.T, rec []byte) {
		whole, secret, _, err := decodeRecord(7, rec)
		k := 0
		for k < len(rec) && !RecordHeadIn(rec[:k]) {
			k++
		}
		d := codec.NewReader("campaign record", rec[:k], 0)
		head, hsecret, herr := decodeRecordHead(&d, 7)
		if err != nil {
			return
		}
		if !RecordHeadIn(rec) {
			t.Fatalf("RecordHeadIn refuses a whole record that decodes:\n%s", hex.Dump(rec))
		}
		if herr != nil || !bytes.Equal(hsecret, secret) || string(appendHead(nil, head)) != string(appendHead(nil, whole)) {
			t.Fatalf("the first %d bytes give %+v, %v; the record gives %+v\n%s", k, head, herr, whole, hex.Dump(rec))
		}
	})
}
