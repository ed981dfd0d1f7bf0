package campaign

import (
	"encoding/binary"
	"fmt"

	"github.com/affinityhq/affinity/internal/codec"
)

// Extension key prefixes of the state DB this package owns (layouts in
// storage/state/FORMAT.md, section "Campaigns").
const (
	prefixHead       = 'G' // a campaign: id → definition and frozen sizes
	prefixSite       = 'H' // a site's campaigns: site, id → empty
	prefixSeq        = 'I' // the last campaign id given
	prefixSecret     = 'K' // a site's token secret: site, gen
	prefixRecipient  = 'Y' // a recipient: id, number
	prefixEmail      = 'Z' // a recipient by email: id, email
	prefixCounter    = 'C' // counters: id, arm, group, variant, partition
	prefixEngagement = 'E' // a recipient's first open and click: id, number
)

const valueVersion = 1

func appendHeadKey(dst []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, prefixHead), id)
}

func appendSiteKey(dst []byte, site string, id uint64) []byte {
	dst = codec.AppendString(append(dst, prefixSite), site)
	return binary.BigEndian.AppendUint64(dst, id)
}

func appendSecretKey(dst []byte, site string, gen uint32) []byte {
	dst = codec.AppendString(append(dst, prefixSecret), site)
	return binary.BigEndian.AppendUint32(dst, gen)
}

// appendRecipientKey appends 'Y' | id u64 | number u32.
func appendRecipientKey(dst []byte, id uint64, n uint32) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixRecipient), id)
	return binary.BigEndian.AppendUint32(dst, n)
}

// appendEmailKey appends 'Z' | id u64 | email str.
func appendEmailKey(dst []byte, id uint64, email string) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixEmail), id)
	return codec.AppendString(dst, email)
}

// appendCounterKey appends 'C' | id u64 | arm u16 | control byte |
// variant u16 | partition u32.
func appendCounterKey(dst []byte, id uint64, c Cell, partition uint32) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixCounter), id)
	dst = binary.BigEndian.AppendUint16(dst, c.Arm)
	dst = append(dst, boolByte(c.Control))
	dst = binary.BigEndian.AppendUint16(dst, c.Variant)
	return binary.BigEndian.AppendUint32(dst, partition)
}

func prefixOf(p byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{p}, id)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Cell names one group of a campaign's recipients: an arm, treated or
// control, and a variant (1-based; 0: the arm has none, and always 0 in
// the control group).
type Cell struct {
	Arm     uint16
	Control bool
	Variant uint16
}

// Recipient is one frozen recipient. Email aliases the stored value in
// the callbacks that pass it.
type Recipient struct {
	Number uint32 // its number in the campaign, from 0, in freeze order
	Email  []byte // normalised (state.NormalizeEmail)
	Cell
	MAC [macLen]byte // the token's MAC (FORMAT.md)
}

// recipient value: version | email str | arm uvarint | control byte |
// variant uvarint | mac <macLen>.
func appendRecipient(dst []byte, r *Recipient) []byte {
	dst = append(dst, valueVersion)
	dst = codec.AppendUvarint(dst, uint64(len(r.Email)))
	dst = append(dst, r.Email...)
	dst = codec.AppendUvarint(dst, uint64(r.Arm))
	dst = append(dst, boolByte(r.Control))
	dst = codec.AppendUvarint(dst, uint64(r.Variant))
	return append(dst, r.MAC[:]...)
}

func decodeRecipient(r *Recipient, v []byte) error {
	d := codec.NewReader("campaign recipient", v, 0)
	d.Version(valueVersion)
	r.Email = d.Bytes()
	arm := d.Uvarint()
	ctl := d.Byte()
	variant := d.Uvarint()
	mac := d.Fixed("mac", macLen)
	if d.Err() == nil {
		switch {
		case arm > 0xffff || variant > 0xffff:
			d.Failf("arm %d or variant %d past 65535", arm, variant)
		case ctl > 1:
			d.Failf("control flag %d; want 0 or 1", ctl)
		default:
			r.Arm, r.Control, r.Variant = uint16(arm), ctl == 1, uint16(variant)
			copy(r.MAC[:], mac)
		}
	}
	return d.End()
}

// email value: version | number uvarint | control byte.
func appendEmailValue(dst []byte, n uint32, control bool) []byte {
	dst = codec.AppendUvarint(append(dst, valueVersion), uint64(n))
	return append(dst, boolByte(control))
}

func decodeEmailValue(v []byte) (n uint32, control bool, err error) {
	d := codec.NewReader("campaign recipient by email", v, 0)
	d.Version(valueVersion)
	x := d.Uvarint()
	c := d.Byte()
	if d.Err() == nil && (x > 0xffffffff || c > 1) {
		d.Failf("number %d or control flag %d out of range", x, c)
	}
	return uint32(x), c == 1, d.End()
}

// Counters are the engagement and conversion counts of one cell, summed
// over partitions.
type Counters struct {
	Opened, Clicked, Converted, Orders uint64
	Revenue                            float64
}

// Add adds o to c.
func (c *Counters) Add(o *Counters) {
	c.Opened += o.Opened
	c.Clicked += o.Clicked
	c.Converted += o.Converted
	c.Orders += o.Orders
	c.Revenue += o.Revenue
}

// AppendCounters appends the value of a counter key: version | opened
// uvarint | clicked uvarint | converted uvarint | orders uvarint |
// revenue float64. The builder's step that counts engagement writes it
// with CounterKey.
func AppendCounters(dst []byte, c *Counters) []byte {
	dst = append(dst, valueVersion)
	dst = codec.AppendUvarint(dst, c.Opened)
	dst = codec.AppendUvarint(dst, c.Clicked)
	dst = codec.AppendUvarint(dst, c.Converted)
	dst = codec.AppendUvarint(dst, c.Orders)
	return codec.AppendFloat64(dst, c.Revenue)
}

// DecodeCounters decodes a counter value into c.
func DecodeCounters(c *Counters, v []byte) error {
	d := codec.NewReader("campaign counters", v, 0)
	d.Version(valueVersion)
	c.Opened, c.Clicked, c.Converted, c.Orders = d.Uvarint(), d.Uvarint(), d.Uvarint(), d.Uvarint()
	c.Revenue = d.Float64()
	return d.End()
}

// CounterKey appends the key of a cell's counters written by partition's
// builder: each partition owns its keys, so concurrent partitions never
// write the same key.
func CounterKey(dst []byte, id uint64, c Cell, partition uint32) []byte {
	return appendCounterKey(dst, id, c, partition)
}

// decodeCounterKey returns the cell of a counter key of campaign id.
func decodeCounterKey(k []byte, id uint64) (Cell, error) {
	if len(k) != 1+8+2+1+2+4 || k[0] != prefixCounter || binary.BigEndian.Uint64(k[1:]) != id || k[11] > 1 {
		return Cell{}, fmt.Errorf("bad campaign counter key %x", k)
	}
	return Cell{Arm: binary.BigEndian.Uint16(k[9:]), Control: k[11] == 1, Variant: binary.BigEndian.Uint16(k[12:])}, nil
}

// secret value: version | secret <32b> | created varint ms.
func appendSecretValue(secret []byte, created int64) []byte {
	return codec.AppendVarint(append([]byte{valueVersion}, secret...), created)
}

// decodeSecret returns a copy of the secret of a secret value.
func decodeSecret(v []byte) ([]byte, error) {
	d := codec.NewReader("campaign secret", v, 0)
	d.Version(valueVersion)
	sec := append([]byte(nil), d.Fixed("secret", secretLen)...)
	d.Varint() // created
	return sec, d.End()
}

// secretLen is the length of a site's token secret.
const secretLen = 32
