package segment

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/affinityhq/affinity/internal/duration"
)

// Config holds the thresholds of the built-in terms lifecycle and rfm.*. A
// rule copies its Config when compiled: change one, recompile the rules.
type Config struct {
	Lifecycle Lifecycle
	RFM       RFM
}

// Lifecycle classifies a visitor by purchase events, deciding in this order:
//
//	prospect  no purchase
//	new       first(purchase) <= New
//	active    count(purchase, ActiveWindow) >= ActiveMin, or since(purchase) <= Lapsing
//	lost      since(purchase) > Lost
//	lapsing   otherwise: since(purchase) in (Lapsing, Lost]
//
// Durations are in ms.
type Lifecycle struct {
	New          int64
	ActiveWindow int64
	ActiveMin    int
	Lapsing      int64
	Lost         int64
}

// RFM scores orders 1 (worst) to 5 (best); a visitor without orders scores 0
// on all three. Each array holds the four ascending edges between scores:
//
//	r = 5 when the last order is at most Recency[0] old, 4 when at most
//	    Recency[1], 3 within Recency[2], 2 within Recency[3], else 1;
//	f = 1 + how many of Frequency the order count reaches (>=);
//	m = 1 + how many of Monetary the revenue reaches (>=).
type RFM struct {
	Recency   [4]int64
	Frequency [4]float64
	Monetary  [4]float64
}

// DefaultConfig returns the defaults: lifecycle new 30d, active ≥ 2
// purchases in 180d or one within 60d, lapsing past 60d, lost past 365d;
// RFM recency 30d/90d/180d/365d, frequency 2/3/5/10 orders, monetary
// 50/100/250/500 in the shop's currency.
func DefaultConfig() Config {
	return Config{
		Lifecycle: Lifecycle{New: 30 * day, ActiveWindow: 180 * day, ActiveMin: 2, Lapsing: 60 * day, Lost: 365 * day},
		RFM: RFM{
			Recency:   [4]int64{30 * day, 90 * day, 180 * day, 365 * day},
			Frequency: [4]float64{2, 3, 5, 10},
			Monetary:  [4]float64{50, 100, 250, 500},
		},
	}
}

// Validate reports the first threshold out of order or range.
func (c *Config) Validate() error {
	l := &c.Lifecycle
	for _, d := range []struct {
		name string
		v    int64
	}{{"lifecycle new", l.New}, {"lifecycle active window", l.ActiveWindow}, {"lifecycle lapsing", l.Lapsing}, {"lifecycle lost", l.Lost}} {
		if d.v <= 0 || d.v > maxDuration {
			return fmt.Errorf("invalid %s %dms: want 1ms to 10000 years", d.name, d.v)
		}
	}
	if l.ActiveMin < 1 {
		return fmt.Errorf("invalid lifecycle active minimum %d: want ≥ 1", l.ActiveMin)
	}
	if l.Lost <= l.Lapsing {
		return fmt.Errorf("invalid lifecycle lost %dms: want more than lapsing %dms", l.Lost, l.Lapsing)
	}
	for i := range 4 {
		if c.RFM.Recency[i] <= 0 || c.RFM.Recency[i] > maxDuration || i > 0 && c.RFM.Recency[i] <= c.RFM.Recency[i-1] {
			return fmt.Errorf("invalid rfm recency edges %v: want 4 ascending durations", c.RFM.Recency)
		}
		if i > 0 && !(c.RFM.Frequency[i] > c.RFM.Frequency[i-1]) {
			return fmt.Errorf("invalid rfm frequency edges %v: want 4 ascending numbers", c.RFM.Frequency)
		}
		if i > 0 && !(c.RFM.Monetary[i] > c.RFM.Monetary[i-1]) {
			return fmt.Errorf("invalid rfm monetary edges %v: want 4 ascending numbers", c.RFM.Monetary)
		}
	}
	return nil
}

// SetRFM sets one axis of the RFM edges from a flag value such as
// "r=30d,90d,180d,365d", "f=2,3,5,10" or "m=50,100,250,500".
func (c *Config) SetRFM(spec string) error {
	axis, list, ok := strings.Cut(spec, "=")
	parts := strings.Split(list, ",")
	if !ok || len(parts) != 4 || (axis != "r" && axis != "f" && axis != "m") {
		return fmt.Errorf("invalid rfm edges %q: want r=|f=|m= and 4 comma-separated edges", spec)
	}
	n := *c
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if axis == "r" {
			d, err := duration.ParseMs(p)
			if err != nil {
				return fmt.Errorf("invalid rfm edges %q: %w", spec, err)
			}
			n.RFM.Recency[i] = d
			continue
		}
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return fmt.Errorf("invalid rfm edges %q: %q is not a number", spec, p)
		}
		if axis == "f" {
			n.RFM.Frequency[i] = f
		} else {
			n.RFM.Monetary[i] = f
		}
	}
	if err := n.Validate(); err != nil {
		return err
	}
	*c = n
	return nil
}

// SetLifecycle sets one lifecycle threshold from a flag value such as
// "new=30d", "active=2/180d" (ActiveMin purchases in ActiveWindow),
// "lapsing=60d" or "lost=365d".
func (c *Config) SetLifecycle(spec string) error {
	key, val, ok := strings.Cut(spec, "=")
	n := *c
	var err error
	switch {
	case !ok:
		err = fmt.Errorf("want new=, active=, lapsing= or lost=")
	case key == "new":
		n.Lifecycle.New, err = duration.ParseMs(val)
	case key == "lapsing":
		n.Lifecycle.Lapsing, err = duration.ParseMs(val)
	case key == "lost":
		n.Lifecycle.Lost, err = duration.ParseMs(val)
	case key == "active":
		cnt, win, ok := strings.Cut(val, "/")
		if !ok {
			err = fmt.Errorf("want active=<purchases>/<window>, e.g. active=2/180d")
			break
		}
		if n.Lifecycle.ActiveMin, err = strconv.Atoi(cnt); err == nil {
			n.Lifecycle.ActiveWindow, err = duration.ParseMs(win)
		}
	default:
		err = fmt.Errorf("unknown stage %q: want new, active, lapsing or lost", key)
	}
	if err == nil {
		err = n.Validate()
	}
	if err != nil {
		return fmt.Errorf("invalid lifecycle threshold %q: %w", spec, err)
	}
	*c = n
	return nil
}

// FormatDuration formats ms d as the rule language writes it: 7d, 36h, 90s.
func FormatDuration(d int64) string {
	if d == inf {
		return "never"
	}
	return string(appendDuration(nil, d))
}
