package campaign

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/affinityhq/affinity/internal/duration"
	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/tracker/event"
)

// Method names the statistics of a report, as the report states them.
const Method = "conversion uplift: Wald 95% interval of p1-p0 (unpooled), relative uplift interval from the log risk ratio (Katz), two-sided pooled two-proportion z-test p-value"

// Group is one group's figures: its frozen size and its counters.
type Group struct {
	Recipients uint64
	Counters
}

// Rates of a group; NaN when it has no recipients.
func (g *Group) rate(x uint64) float64 { return ratio(float64(x), float64(g.Recipients)) }

// RevenuePerRecipient is the group's revenue over its recipients.
func (g *Group) RevenuePerRecipient() float64 { return ratio(g.Revenue, float64(g.Recipients)) }

// ArmReport is one arm's figures.
type ArmReport struct {
	Arm      *Arm
	Treated  Group
	Control  Group
	Variants []Group // the treated per variant, with Arm.Variants
}

// Report is a campaign's figures at one instant.
type Report struct {
	Campaign *Campaign
	At       int64 // Unix ms the report was read
	Arms     []ArmReport
}

// Counting states what the counters hold, as the report says it.
const Counting = "opens and clicks unique per recipient; converted: recipients with a purchase of a visitor linked to their email (identified before it) in [sent, window_end]; orders: those purchases, once per order id; revenue: their totals"

// Report reads the report of campaign c at instant at (Unix ms): its
// frozen sizes and its counters (Counters), O(cells × partitions).
func (s *Store) Report(c *Campaign, at int64) (*Report, error) {
	cs, err := s.Counters(c)
	if err != nil {
		return nil, err
	}
	return ReportOf(c, cs, at), nil
}

// ReportOf is the report of campaign c at instant at from its counters
// per cell (Counters, or SumCounterRows of a build group's owners).
func ReportOf(c *Campaign, cs map[Cell]Counters, at int64) *Report {
	r := &Report{Campaign: c, At: at, Arms: make([]ArmReport, len(c.Arms))}
	for i := range c.Arms {
		a := &c.Arms[i]
		ar := &r.Arms[i]
		ar.Arm = a
		ar.Treated.Recipients, ar.Control.Recipients = a.Treated, a.Control
		ar.Control.Counters = cs[Cell{Arm: uint16(i), Control: true}]
		if len(a.Variants) == 0 {
			ar.Treated.Counters = cs[Cell{Arm: uint16(i)}]
			continue
		}
		ar.Variants = make([]Group, len(a.Variants))
		for j := range a.Variants {
			g := &ar.Variants[j]
			g.Recipients, g.Counters = a.VariantTreated[j], cs[Cell{Arm: uint16(i), Variant: uint16(j + 1)}]
			ar.Treated.Counters.Add(&g.Counters)
		}
	}
	return r
}

// Final reports whether the conversion window has closed at r.At.
func (r *Report) Final() bool { return r.At > r.Campaign.Sent+r.Campaign.Window }

// AppendJSON appends the report as JSON:
//
//	{"id","site","name","sent","window","window_end","state":"live|final","holdout",
//	 "engagement":Counting,"method",
//	 "arms":[{"name","segment"|"list","audience":{…},"treated":{…,"variants":[…]},"control":{…},
//	          "uplift":{…},"vs_first":{…}}]}
//
// A group is {"recipients","opened","clicked","converted","orders",
// "revenue","open_rate","click_rate","conversion_rate",
// "revenue_per_recipient"}; undefined numbers are null.
func (r *Report) AppendJSON(dst []byte) []byte {
	c := r.Campaign
	dst = append(dst, `{"id":`...)
	dst = event.AppendJSONString(dst, c.IDString())
	dst = append(dst, `,"site":`...)
	dst = event.AppendJSONString(dst, c.Site)
	dst = append(dst, `,"name":`...)
	dst = event.AppendJSONString(dst, c.Name)
	dst = append(dst, `,"sent":`...)
	dst = profile.AppendJSONTime(dst, c.Sent)
	dst = append(dst, `,"window_end":`...)
	dst = profile.AppendJSONTime(dst, c.Sent+c.Window)
	dst = append(dst, `,"state":`...)
	if r.Final() {
		dst = append(dst, `"final"`...)
	} else {
		dst = append(dst, `"live"`...)
	}
	dst = append(dst, `,"holdout":`...)
	dst = appendNum(dst, c.Holdout)
	dst = append(dst, `,"engagement":`...)
	dst = event.AppendJSONString(dst, Counting)
	dst = append(dst, `,"method":`...)
	dst = event.AppendJSONString(dst, Method)
	dst = append(dst, `,"arms":[`...)
	for i := range r.Arms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = r.appendArm(dst, i)
	}
	return append(dst, "]}"...)
}

func (r *Report) appendArm(dst []byte, i int) []byte {
	ar := &r.Arms[i]
	a := ar.Arm
	dst = append(dst, `{"name":`...)
	dst = event.AppendJSONString(dst, a.Name)
	if a.Segment != "" {
		dst = append(dst, `,"segment":`...)
		dst = event.AppendJSONString(dst, a.Segment)
	} else {
		dst = append(dst, `,"list":`...)
		dst = event.AppendJSONString(dst, a.List)
	}
	dst = appendAudience(append(dst, `,"audience":`...), a)
	dst = appendGroup(append(dst, `,"treated":`...), &ar.Treated)
	if len(ar.Variants) > 0 {
		dst = append(dst[:len(dst)-1], `,"variants":[`...)
		for j := range ar.Variants {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = event.AppendJSONString(dst, a.Variants[j])
			dst = appendGroupFields(append(dst, ','), &ar.Variants[j])
			dst = appendUplift(append(dst, `,"uplift":`...), &ar.Variants[j], &ar.Control)
			dst = append(dst, '}')
		}
		dst = append(dst, "]}"...)
	}
	dst = appendGroup(append(dst, `,"control":`...), &ar.Control)
	dst = appendUplift(append(dst, `,"uplift":`...), &ar.Treated, &ar.Control)
	if i > 0 {
		f := &r.Arms[0].Treated
		t := &ar.Treated
		dst = append(dst, `,"vs_first":{"arm":`...)
		dst = event.AppendJSONString(dst, r.Arms[0].Arm.Name)
		dst = appendNum(append(dst, `,"open_rate":`...), ratio(t.rate(t.Opened), f.rate(f.Opened)))
		dst = appendNum(append(dst, `,"click_rate":`...), ratio(t.rate(t.Clicked), f.rate(f.Clicked)))
		dst = appendNum(append(dst, `,"conversion_rate":`...), ratio(t.rate(t.Converted), f.rate(f.Converted)))
		dst = appendNum(append(dst, `,"revenue_per_recipient":`...), ratio(t.RevenuePerRecipient(), f.RevenuePerRecipient()))
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

func appendAudience(dst []byte, a *Arm) []byte {
	dst = strconv.AppendUint(append(dst, `{"members":`...), a.Members, 10)
	dst = strconv.AppendUint(append(dst, `,"no_email":`...), a.NoEmail, 10)
	dst = strconv.AppendUint(append(dst, `,"in_earlier_arm":`...), a.InEarlierArm, 10)
	return append(dst, '}')
}

func appendGroup(dst []byte, g *Group) []byte {
	return append(appendGroupFields(append(dst, '{'), g), '}')
}

func appendGroupFields(dst []byte, g *Group) []byte {
	dst = strconv.AppendUint(append(dst, `"recipients":`...), g.Recipients, 10)
	dst = strconv.AppendUint(append(dst, `,"opened":`...), g.Opened, 10)
	dst = strconv.AppendUint(append(dst, `,"clicked":`...), g.Clicked, 10)
	dst = strconv.AppendUint(append(dst, `,"converted":`...), g.Converted, 10)
	dst = strconv.AppendUint(append(dst, `,"orders":`...), g.Orders, 10)
	dst = appendNum(append(dst, `,"revenue":`...), g.Revenue)
	dst = appendNum(append(dst, `,"open_rate":`...), g.rate(g.Opened))
	dst = appendNum(append(dst, `,"click_rate":`...), g.rate(g.Clicked))
	dst = appendNum(append(dst, `,"conversion_rate":`...), g.rate(g.Converted))
	return appendNum(append(dst, `,"revenue_per_recipient":`...), g.RevenuePerRecipient())
}

func appendUplift(dst []byte, t, c *Group) []byte {
	u := TwoProportions(t.Converted, t.Recipients, c.Converted, c.Recipients)
	dst = appendNum(append(dst, `{"conversion":{"absolute":`...), u.Absolute)
	dst = appendNum(append(dst, `,"absolute_ci95":[`...), u.Low)
	dst = appendNum(append(dst, ','), u.High)
	dst = appendNum(append(dst, `],"relative":`...), u.Relative)
	dst = appendNum(append(dst, `,"relative_ci95":[`...), u.RelLow)
	dst = appendNum(append(dst, ','), u.RelHigh)
	dst = appendNum(append(dst, `],"p_value":`...), u.P)
	dst = appendNum(append(dst, `},"revenue_per_recipient_difference":`...), t.RevenuePerRecipient()-c.RevenuePerRecipient())
	return append(dst, '}')
}

// appendNum appends f as a JSON number, null when NaN or infinite.
func appendNum(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// AppendCSV appends the report as CSV: a header, then one row per arm
// and group (treated, each variant, control) with the group's figures.
func (r *Report) AppendCSV(dst []byte) []byte {
	dst = append(dst, "arm,group,variant,recipients,opened,clicked,converted,orders,revenue,open_rate,click_rate,conversion_rate,revenue_per_recipient\n"...)
	row := func(arm, group, variant string, g *Group) {
		dst = append(append(append(append(append(dst, arm...), ','), group...), ','), variant...)
		dst = strconv.AppendUint(append(dst, ','), g.Recipients, 10)
		for _, x := range [...]uint64{g.Opened, g.Clicked, g.Converted, g.Orders} {
			dst = strconv.AppendUint(append(dst, ','), x, 10)
		}
		for _, f := range [...]float64{g.Revenue, g.rate(g.Opened), g.rate(g.Clicked), g.rate(g.Converted), g.RevenuePerRecipient()} {
			dst = append(dst, ',')
			if !math.IsNaN(f) && !math.IsInf(f, 0) {
				dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
			}
		}
		dst = append(dst, '\n')
	}
	for i := range r.Arms {
		ar := &r.Arms[i]
		// Arm and variant names hold no comma, quote or newline: checked
		// by invalid.Name and ParseSpec, except a variant's comma.
		row(ar.Arm.Name, "treated", "", &ar.Treated)
		for j := range ar.Variants {
			row(ar.Arm.Name, "treated", csvField(ar.Arm.Variants[j]), &ar.Variants[j])
		}
		row(ar.Arm.Name, "control", "", &ar.Control)
	}
	return dst
}

// csvField returns s quoted as a CSV field when it holds a comma or quote.
func csvField(s string) string {
	if !strings.ContainsAny(s, `,"`) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// AppendJSON appends the campaign as JSON:
//
//	{"id","site","name","sent","window","window_end","holdout","goal","recipients",
//	 "arms":[{"name","segment"|"list","variants":[…],"audience":{…},"treated","control","variant_treated":[…]}]}
func (c *Campaign) AppendJSON(dst []byte) []byte {
	dst = event.AppendJSONString(append(dst, `{"id":`...), c.IDString())
	dst = event.AppendJSONString(append(dst, `,"site":`...), c.Site)
	dst = event.AppendJSONString(append(dst, `,"name":`...), c.Name)
	dst = profile.AppendJSONTime(append(dst, `,"sent":`...), c.Sent)
	dst = event.AppendJSONString(append(dst, `,"window":`...), duration.Format(time.Duration(c.Window)*time.Millisecond))
	dst = profile.AppendJSONTime(append(dst, `,"window_end":`...), c.Sent+c.Window)
	dst = appendNum(append(dst, `,"holdout":`...), c.Holdout)
	dst = event.AppendJSONString(append(dst, `,"goal":`...), c.Goal)
	dst = strconv.AppendUint(append(dst, `,"recipients":`...), c.Recipients(), 10)
	dst = append(dst, `,"arms":[`...)
	for i := range c.Arms {
		a := &c.Arms[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = event.AppendJSONString(append(dst, `{"name":`...), a.Name)
		if a.Segment != "" {
			dst = event.AppendJSONString(append(dst, `,"segment":`...), a.Segment)
		} else {
			dst = event.AppendJSONString(append(dst, `,"list":`...), a.List)
		}
		if len(a.Variants) > 0 {
			dst = append(dst, `,"variants":[`...)
			for j, v := range a.Variants {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = event.AppendJSONString(dst, v)
			}
			dst = append(dst, `],"variant_treated":[`...)
			for j, n := range a.VariantTreated {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendUint(dst, n, 10)
			}
			dst = append(dst, ']')
		}
		dst = appendAudience(append(dst, `,"audience":`...), a)
		dst = strconv.AppendUint(append(dst, `,"treated":`...), a.Treated, 10)
		dst = strconv.AppendUint(append(dst, `,"control":`...), a.Control, 10)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}
