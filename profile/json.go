package profile

import (
	"math"
	"strconv"
	"time"

	"github.com/affinityhq/affinity/tracker/event"
)

// AppendJSON appends p as the JSON object GET /v1/visitors returns, with
// scores evaluated at atMs (Unix ms):
//
//	{"at":"…","first_seen":"…","last_seen":"…","email":"…","customer_id":"…",
//	 "interests":{"brand":[{"value":"acme","score":3.2,"share":0.61,"log_g":…},…],…},
//	 "events":{"view":{"count":3,"first":"…","last":"…"},…},
//	 "traits":{"birthday":"1990-05-12","vip":true},
//	 "cart":[{"product":"p1","qty":1,"added":"…"}],
//	 "orders":{"count":1,"revenue":25,"first":"…","last":"…"}}
//
// Interests list the values with a positive score, best first (ties by
// value). Times are in TimeLayout. Keys whose value is empty are left out. It allocates nothing
// beyond growing dst.
func (p *Profile) AppendJSON(dst []byte, cfg *Config, atMs int64) []byte {
	dst = append(dst, `{"at":`...)
	dst = AppendJSONTime(dst, atMs)
	if !p.Empty() {
		dst = append(dst, `,"first_seen":`...)
		dst = AppendJSONTime(dst, p.FirstSeen)
		dst = append(dst, `,"last_seen":`...)
		dst = AppendJSONTime(dst, p.LastSeen)
	}
	if p.Email != "" {
		dst = append(dst, `,"email":`...)
		dst = event.AppendJSONString(dst, p.Email)
	}
	if p.Customer != "" {
		dst = append(dst, `,"customer_id":`...)
		dst = event.AppendJSONString(dst, p.Customer)
	}

	dst = append(dst, `,"interests":{`...)
	first := true
	for d := range Dim(NumDims) {
		var idx [MaxTopK]uint8
		var gs [MaxTopK]float64
		n := 0
		for i := range p.Dims[d] {
			if i >= MaxTopK {
				break
			}
			g := p.Dims[d][i].LogG()
			if g == NegInf {
				continue
			}
			// insertion sort, best first; entries are sorted by value, so
			// equal scores stay in value order
			j := n
			for j > 0 && gs[j-1] < g {
				idx[j], gs[j] = idx[j-1], gs[j-1]
				j--
			}
			idx[j], gs[j] = uint8(i), g
			n++
		}
		if n == 0 {
			continue
		}
		m, sum := p.norm(d)
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, d.String()...)
		dst = append(dst, `":[`...)
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"value":`...)
			dst = event.AppendJSONString(dst, p.Dims[d][idx[i]].Value)
			dst = append(dst, `,"score":`...)
			dst = appendJSONFloat(dst, cfg.ScoreAt(d, gs[i], atMs))
			dst = append(dst, `,"share":`...)
			dst = appendJSONFloat(dst, math.Exp2(gs[i]-m)/sum)
			dst = append(dst, `,"log_g":`...)
			dst = appendJSONFloat(dst, gs[i])
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, '}')

	dst = append(dst, `,"events":{`...)
	first = true
	for t := range p.Events {
		s := &p.Events[t]
		if s.Count == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, event.Type(t).String()...)
		dst = append(dst, `":{"count":`...)
		dst = strconv.AppendUint(dst, s.Count, 10)
		dst = append(dst, `,"first":`...)
		dst = AppendJSONTime(dst, s.First)
		dst = append(dst, `,"last":`...)
		dst = AppendJSONTime(dst, s.Last)
		dst = append(dst, '}')
	}
	dst = append(dst, '}')

	if len(p.Traits) > 0 {
		dst = append(dst, `,"traits":{`...)
		for i := range p.Traits {
			tr := &p.Traits[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = event.AppendJSONString(dst, tr.Key)
			dst = append(dst, ':')
			switch {
			case tr.Kind == event.TraitNumber && isJSONNumber(tr.Value),
				tr.Kind == event.TraitBool && (tr.Value == "true" || tr.Value == "false"):
				dst = append(dst, tr.Value...)
			default:
				dst = event.AppendJSONString(dst, tr.Value)
			}
		}
		dst = append(dst, '}')
	}

	dst = append(dst, `,"cart":[`...)
	first = true
	for i := range p.Cart {
		c := &p.Cart[i]
		if !c.InCart() {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `{"product":`...)
		dst = event.AppendJSONString(dst, c.ID)
		dst = append(dst, `,"qty":`...)
		dst = strconv.AppendUint(dst, uint64(c.Qty), 10)
		dst = append(dst, `,"added":`...)
		dst = AppendJSONTime(dst, c.Added)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')

	o := &p.Orders
	dst = append(dst, `,"orders":{"count":`...)
	dst = strconv.AppendUint(dst, o.Count, 10)
	dst = append(dst, `,"revenue":`...)
	dst = appendJSONFloat(dst, o.Revenue)
	if o.Count > 0 {
		dst = append(dst, `,"first":`...)
		dst = AppendJSONTime(dst, o.First)
		dst = append(dst, `,"last":`...)
		dst = AppendJSONTime(dst, o.Last)
	}
	return append(dst, "}}"...)
}

// TimeLayout is the format of every time the API writes (profiles, segment
// definitions, members, change records): RFC 3339 in UTC with milliseconds,
// always three digits, so that times have a fixed width and sort as text.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendTime appends ms (Unix ms) in TimeLayout.
func AppendTime(dst []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(dst, TimeLayout)
}

// AppendJSONTime appends ms (Unix ms) in TimeLayout as a JSON string.
func AppendJSONTime(dst []byte, ms int64) []byte {
	return append(AppendTime(append(dst, '"'), ms), '"')
}

// appendJSONFloat appends f as a JSON number; NaN and ±Inf, which JSON
// cannot hold, as null.
func appendJSONFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// isJSONNumber reports whether s is a JSON number literal.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
