package campaign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
)

// Limits of a campaign's definition.
const (
	MaxArms       = 16
	MaxVariants   = 16
	MaxHoldout    = 50 // percent
	MaxWindow     = 365 * 24 * time.Hour
	maxVariantLen = 128
)

// GoalPurchase is the one goal counted: a purchase event of the
// recipient.
const GoalPurchase = "purchase"

// Arm is one audience of a campaign: a segment's members or a static
// list's emails, frozen at Sent.
type Arm struct {
	Name     string
	Segment  string // one of Segment and List
	List     string
	Variants []string // the offers the treated are dealt among; nil: none

	// Sizes at the freeze. Members counts the audience's rows read (a
	// segment's visitors, a list's rows); NoEmail those without an email
	// (no recipient); InEarlierArm the emails an earlier arm took.
	Members, NoEmail, InEarlierArm uint64
	Treated, Control               uint64
	VariantTreated                 []uint64 // per variant, with Variants
}

// Campaign is a campaign's definition and its frozen sizes.
type Campaign struct {
	ID      uint64
	Site    string
	Name    string
	Sent    int64   // the freeze instant, Unix ms
	Window  int64   // ms: a goal event in [Sent, Sent+Window] converts
	Holdout float64 // percent of each arm's recipients in the control group
	Goal    string
	// SecretGen is the generation of the site secret its tokens are
	// signed with.
	SecretGen uint32
	Arms      []Arm
}

// IDString is the campaign's id as the API and rules spell it.
func (c *Campaign) IDString() string { return strconv.FormatUint(c.ID, 10) }

// inWindow reports whether instant ts (Unix ms) is in the conversion
// window [Sent, Sent+Window], both ends included.
func (c *Campaign) inWindow(ts int64) bool { return ts >= c.Sent && ts <= c.Sent+c.Window }

// Recipients is the number of recipients, treated and control.
func (c *Campaign) Recipients() uint64 {
	var n uint64
	for i := range c.Arms {
		n += c.Arms[i].Treated + c.Arms[i].Control
	}
	return n
}

// ParseID parses a campaign id of the API ("7").
func ParseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 || s[0] == '0' || s[0] == '+' {
		return 0, invalid.Errorf("invalid campaign id %s: want a positive decimal number such as 7", quote.Value(s))
	}
	return id, nil
}

// spec is the JSON of POST /v1/campaigns/{site}.
type spec struct {
	Name    string   `json:"name"`
	Arms    []armDef `json:"arms"`
	Holdout *float64 `json:"holdout"`
	Window  string   `json:"window"`
	Goal    string   `json:"goal"`
}

type armDef struct {
	Name     string   `json:"name"`
	Segment  string   `json:"segment"`
	List     string   `json:"list"`
	Variants []string `json:"variants"`
}

// ParseSpec reads the JSON definition of a new campaign of site: every
// field is checked, and the first bad one is an *invalid.Error naming it
// and its value. The returned Campaign has no id, time or sizes yet.
func ParseSpec(site string, body []byte) (*Campaign, error) {
	var s spec
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, invalid.Errorf("invalid campaign JSON: %s", quote.OneLine(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid.Errorf("invalid campaign JSON: more than one object")
	}
	if err := invalid.Name("campaign name", s.Name); err != nil {
		return nil, err
	}
	c := &Campaign{Site: site, Name: s.Name, Goal: GoalPurchase}
	if s.Holdout != nil {
		if h := *s.Holdout; !(h >= 0 && h <= MaxHoldout) {
			return nil, invalid.Errorf("invalid holdout %v: want a percentage from 0 to %d", h, MaxHoldout)
		}
		c.Holdout = *s.Holdout
	}
	if s.Window == "" {
		return nil, invalid.Errorf("invalid window \"\": want the conversion window such as 7d")
	}
	w, err := duration.ParseMs(s.Window)
	if err != nil {
		return nil, invalid.Errorf("invalid window %s: %s", quote.Value(s.Window), err)
	}
	if w <= 0 || w > MaxWindow.Milliseconds() {
		return nil, invalid.Errorf("invalid window %s: want more than 0 and at most %s", quote.Value(s.Window), duration.Format(MaxWindow))
	}
	c.Window = w
	if s.Goal != "" && s.Goal != GoalPurchase {
		return nil, invalid.Errorf("invalid goal %s: want %q (the one goal counted)", quote.Value(s.Goal), GoalPurchase)
	}
	if len(s.Arms) == 0 || len(s.Arms) > MaxArms {
		return nil, invalid.Errorf("invalid arms: %d given; want 1..%d", len(s.Arms), MaxArms)
	}
	for i, a := range s.Arms {
		if err := invalid.Name("arm name", a.Name); err != nil {
			return nil, err
		}
		for _, b := range s.Arms[:i] {
			if b.Name == a.Name {
				return nil, invalid.Errorf("invalid arm name %q: given twice", a.Name)
			}
		}
		switch {
		case (a.Segment == "") == (a.List == ""):
			return nil, invalid.Errorf("invalid arm %q: want exactly one of \"segment\" and \"list\"", a.Name)
		case a.Segment != "":
			if err := invalid.Name("segment name", a.Segment); err != nil {
				return nil, fmt.Errorf("arm %q: %w", a.Name, err)
			}
		default:
			if err := invalid.Name("list name", a.List); err != nil {
				return nil, fmt.Errorf("arm %q: %w", a.Name, err)
			}
		}
		if a.Variants != nil && (len(a.Variants) < 2 || len(a.Variants) > MaxVariants) {
			return nil, invalid.Errorf("invalid variants of arm %q: %d given; want 2..%d (or none)", a.Name, len(a.Variants), MaxVariants)
		}
		for j, v := range a.Variants {
			if v == "" || len(v) > maxVariantLen || bytes.ContainsAny([]byte(v), "\r\n") {
				return nil, invalid.Errorf("invalid variant %s of arm %q: want 1..%d bytes on one line", quote.Value(v), a.Name, maxVariantLen)
			}
			for _, u := range a.Variants[:j] {
				if u == v {
					return nil, invalid.Errorf("invalid variant %s of arm %q: given twice", quote.Value(v), a.Name)
				}
			}
		}
		c.Arms = append(c.Arms, Arm{Name: a.Name, Segment: a.Segment, List: a.List, Variants: a.Variants})
	}
	return c, nil
}

// head value: version | site str | name str | sent varint | window varint
// | holdout float64 | goal str | secret gen uvarint | n uvarint | n × arm;
// arm: name str | kind byte ('s' segment, 'l' list) | source str |
// members uvarint | no email uvarint | in earlier arm uvarint | treated
// uvarint | control uvarint | m uvarint | m × (variant str | treated
// uvarint).
func appendHead(dst []byte, c *Campaign) []byte {
	dst = append(dst, valueVersion)
	dst = codec.AppendString(dst, c.Site)
	dst = codec.AppendString(dst, c.Name)
	dst = codec.AppendVarint(dst, c.Sent)
	dst = codec.AppendVarint(dst, c.Window)
	dst = codec.AppendFloat64(dst, c.Holdout)
	dst = codec.AppendString(dst, c.Goal)
	dst = codec.AppendUvarint(dst, uint64(c.SecretGen))
	dst = codec.AppendUvarint(dst, uint64(len(c.Arms)))
	for i := range c.Arms {
		a := &c.Arms[i]
		dst = codec.AppendString(dst, a.Name)
		if a.Segment != "" {
			dst = codec.AppendString(append(dst, 's'), a.Segment)
		} else {
			dst = codec.AppendString(append(dst, 'l'), a.List)
		}
		for _, n := range [...]uint64{a.Members, a.NoEmail, a.InEarlierArm, a.Treated, a.Control, uint64(len(a.Variants))} {
			dst = codec.AppendUvarint(dst, n)
		}
		for j, v := range a.Variants {
			dst = codec.AppendUvarint(codec.AppendString(dst, v), a.VariantTreated[j])
		}
	}
	return dst
}

func decodeHead(c *Campaign, v []byte) error {
	d := codec.NewReader("campaign", v, 0)
	d.Version(valueVersion)
	c.Site, c.Name = string(d.Bytes()), string(d.Bytes())
	c.Sent, c.Window = d.Varint(), d.Varint()
	c.Holdout = d.Float64()
	c.Goal = string(d.Bytes())
	gen := d.Uvarint()
	if d.Err() == nil && gen > 0xffffffff {
		d.Failf("secret generation %d past 2^32-1", gen)
	}
	c.SecretGen = uint32(gen)
	n := d.Count(1)
	if d.Err() == nil && n > MaxArms {
		d.Failf("%d arms; at most %d", n, MaxArms)
	}
	c.Arms = make([]Arm, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		d.Item("arm", i)
		var a Arm
		a.Name = string(d.Bytes())
		switch k := d.Byte(); k {
		case 's', 'l':
			// An arm names its segment or list: appendHead tells the
			// kinds apart by which name is set, so an empty one would
			// come back as the other kind.
			name := string(d.Bytes())
			if d.Err() == nil && name == "" {
				d.Failf("arm kind %q with an empty name", k)
			}
			if k == 's' {
				a.Segment = name
			} else {
				a.List = name
			}
		default:
			if d.Err() == nil {
				d.Failf("arm kind %q; want 's' or 'l'", k)
			}
		}
		a.Members, a.NoEmail, a.InEarlierArm = d.Uvarint(), d.Uvarint(), d.Uvarint()
		a.Treated, a.Control = d.Uvarint(), d.Uvarint()
		m := d.Count(1)
		if d.Err() == nil && m > MaxVariants {
			d.Failf("%d variants; at most %d", m, MaxVariants)
		}
		for j := 0; j < m && d.Err() == nil; j++ {
			a.Variants = append(a.Variants, string(d.Bytes()))
			a.VariantTreated = append(a.VariantTreated, d.Uvarint())
		}
		c.Arms = append(c.Arms, a)
	}
	return d.End()
}
