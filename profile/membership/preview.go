package membership

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/profile/segment"
	"github.com/affinityhq/affinity/tracker/event"
)

// PreviewOptions bounds a Preview.
type PreviewOptions struct {
	// Sample is how many matching profiles to return with their facts.
	Sample int
	// MaxScan is the most candidate profiles to evaluate (> 0).
	MaxScan int
	// Deadline is when to stop evaluating (zero: none).
	Deadline time.Time
	// At is the instant to evaluate at (Unix ms); 0: the clock's now.
	At int64
	// Keep, if set, leaves out the candidates it is false for, as if the
	// site had no such profile: a node of a build group previews its
	// partitions' share.
	Keep func(v event.UUID) bool
}

// PreviewResult is what a rule would select now.
type PreviewResult struct {
	// Rule is the compiled rule.
	Rule *segment.Rule
	// At is the instant evaluated (Unix ms).
	At int64
	// Count is how many of the scanned profiles match: the segment's size
	// at At when Exact, a lower bound of it otherwise.
	Count int
	// Scanned is how many candidate profiles were evaluated.
	Scanned int
	// Exact reports whether every candidate was evaluated (neither
	// MaxScan nor Deadline stopped the scan).
	Exact bool
	// FromIndex reports whether the candidates came off the interest index
	// (segment.Rule.Necessary) rather than from every profile of the site.
	FromIndex bool
	// Sample is the first matching profiles, in candidate order.
	Sample []PreviewMember
}

// PreviewMember is one profile of a preview's sample.
type PreviewMember struct {
	Visitor event.UUID
	Email   string
	// Facts is the JSON object of the rule's terms and their values
	// (segment.Rule.AppendFacts).
	Facts string
	// Order is the member's place in candidate order, as bytes that
	// compare as it: shares of a preview merge by it.
	Order []byte
}

// Preview compiles src (an *invalid.Error with the position when it does
// not, as Put) and evaluates it at the clock's now over the site's
// profiles without storing anything: the candidates come off the interest
// index when the rule names necessary interests, as a backfill's do, else
// from every profile. It reads a snapshot per scan, never takes the
// builder's locks and stops at opts.MaxScan candidates or opts.Deadline,
// saying so (Exact false), so it costs ingest no more than a bounded read.
func (e *Engine) Preview(site, src string, opts PreviewOptions) (*PreviewResult, error) {
	if err := checkSite(site); err != nil {
		return nil, err
	}
	if opts.MaxScan <= 0 {
		return nil, fmt.Errorf("BUG: membership.Preview needs MaxScan > 0")
	}
	rule, err := segment.Compile(src, e.opts.Rules)
	if err != nil {
		return nil, err
	}
	res := &PreviewResult{Rule: rule, At: opts.At, Exact: true}
	if res.At == 0 {
		res.At = e.now()
	}
	var (
		dec     profile.PartialDecoder
		subj    = segment.ProfileSubject{Cfg: e.cfg}
		parts   = rule.Parts() | profile.PartIdentity
		seen    map[event.UUID]struct{} // the index gives a visitor once per threshold
		buf     []byte
		facts   []byte
		derr    error
		checkAt = 0
	)
	each := func(v event.UUID, prof, order []byte) bool {
		if opts.Keep != nil && !opts.Keep(v) {
			return true
		}
		if res.Scanned >= opts.MaxScan {
			res.Exact = false
			return false
		}
		// time.Now costs little next to a profile decode, but is still
		// read only every 64 candidates.
		if checkAt++; checkAt&63 == 0 && !opts.Deadline.IsZero() && time.Now().After(opts.Deadline) {
			res.Exact = false
			return false
		}
		if prof == nil {
			if _, dup := seen[v]; dup {
				return true
			}
			seen[v] = struct{}{}
			var ok bool
			var err error
			if buf, ok, err = e.db.Profile(site, v, buf); err != nil || !ok {
				derr = err
				return err == nil // deleted since the index was read
			}
			prof = buf
		}
		p, err := dec.Decode(prof, parts)
		if err != nil {
			derr = fmt.Errorf("cannot decode the profile of visitor %s of site %q: %w", v, site, err)
			return false
		}
		res.Scanned++
		subj.P = p
		if member, _ := rule.Eval(&subj, res.At); !member {
			return true
		}
		res.Count++
		if len(res.Sample) < opts.Sample {
			facts = rule.AppendFacts(facts[:0], &subj, res.At)
			// p.Email views buf, which the next candidate's read overwrites.
			res.Sample = append(res.Sample, PreviewMember{Visitor: v, Email: strings.Clone(p.Email), Facts: string(facts), Order: bytes.Clone(order)})
		}
		return true
	}
	if _, necessary := rule.Necessary(); necessary {
		seen = map[event.UUID]struct{}{}
	}
	res.FromIndex, err = e.candidates(site, rule, res.At, each)
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot preview a rule over site %q: %w", site, err)
	}
	return res, nil
}
