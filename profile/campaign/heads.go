package campaign

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/profile/defs"
	"github.com/affinityhq/affinity/tracker/event"
)

// Heads is what a collector without state (`affinity collect`) knows of
// a build group's campaigns, to check the tokens of the engagement
// endpoints (tracker.Engagement): each campaign's head and the site
// secrets the heads name, read from the campaign records of the
// definitions topic. It holds no recipient: a token's MAC signs its
// recipient's number, so a number below the campaign's count with a
// good MAC is a recipient, and the visitor its opens and clicks are
// logged under follows from the two (EngagementVisitor).
//
// A token Heads cannot place is refused in one of two ways. Until the
// consumer has read the topic up to the end it had at start, every token
// is 503: a campaign that exists must not be refused as forged. After,
// a token of a campaign Heads does not hold is 503 while the consumer
// has not applied the topic up to its end read after the request came
// (the campaign is on the topic, not yet read), else 404 (forged, or
// of a deleted campaign). The end is one request to Kafka, shared by
// the requests that came before it was sent.
type Heads struct {
	topic Follower

	mu      sync.RWMutex
	heads   map[uint64]*Campaign
	deleted map[uint64]struct{} // 404 without asking Kafka for the end
	secrets map[secretKey]*siteSecret

	probeMu  sync.Mutex
	probeAt  time.Time // when the last end probe was sent
	probeEnd int64
	probeErr error
}

// Follower is the consumer of the definitions topic as Heads sees it
// (defs.Log).
type Follower interface {
	// CaughtUp reports whether the consumer applied every record the
	// topic held when it started.
	CaughtUp() bool
	// Applied returns the offset after the last record applied.
	Applied() int64
	// End returns the offset after the topic's last record now.
	End(ctx context.Context) (int64, error)
}

// NewHeads returns an empty Heads; Follow names its topic's consumer.
func NewHeads() *Heads {
	return &Heads{heads: map[uint64]*Campaign{}, deleted: map[uint64]struct{}{}, secrets: map[secretKey]*siteSecret{}}
}

// Follow sets the consumer that applies the topic to h (ApplyDefinition),
// before it starts.
func (h *Heads) Follow(topic Follower) { h.topic = topic }

// HeadsOptions sets o to apply campaign records only, and to keep of a
// chunked one the chunks holding its head: a collector never holds a
// campaign's recipients.
func HeadsOptions(o *defs.Options) {
	o.Kinds = []byte{defs.KindCampaign}
	o.Enough = func(kind byte, prefix []byte) bool { return kind != defs.KindCampaign || RecordHeadIn(prefix) }
}

// ApplyDefinition applies a campaign record of the definitions topic
// (a defs.Applier): a put holds the campaign's head and its secret, a
// delete drops it. Other kinds are ignored.
func (h *Heads) ApplyDefinition(r *defs.Record) (any, error) {
	if r.Kind != defs.KindCampaign {
		return nil, nil
	}
	id, err := ParseID(r.Name)
	if err != nil {
		return nil, err
	}
	if r.Op == defs.OpDelete {
		h.mu.Lock()
		delete(h.heads, id)
		h.deleted[id] = struct{}{}
		h.mu.Unlock()
		return nil, nil
	}
	d := codec.NewReader("campaign record", r.Body, 0)
	c, secret, err := decodeRecordHead(&d, id)
	if err != nil {
		return nil, err
	}
	if c.Site != r.Site {
		return nil, fmt.Errorf("cannot apply %s: campaign %d is of site %q", r.Describe(), id, c.Site)
	}
	k := secretKey{c.Site, c.SecretGen}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ss := h.secrets[k]; ss == nil {
		h.secrets[k] = &siteSecret{key: bytes.Clone(secret)}
	} else if !bytes.Equal(ss.key, secret) {
		return nil, fmt.Errorf("campaign %d: its record's secret of generation %d of site %q differs from the one this node holds", id, c.SecretGen, c.Site)
	}
	h.heads[id] = c
	delete(h.deleted, id)
	return c, nil
}

// EngagementSite checks tok's form and MAC as Store.EngagementSite does,
// against the heads read from the topic: ok is false for a malformed,
// forged or altered token, or one of a campaign deleted or never on the
// topic; err (503) while the consumer has not read far enough to tell.
func (h *Heads) EngagementSite(tok []byte) (site string, visitor event.UUID, ok bool, err error) {
	asked := time.Now()
	id, n, mac, err := ParseToken(tok)
	if err != nil {
		return "", visitor, false, nil
	}
	if !h.topic.CaughtUp() {
		return "", visitor, false, fmt.Errorf("campaigns not read yet: this collector is reading the definitions topic from its start (at offset %d)", h.topic.Applied())
	}
	c, ss, gone := h.lookup(id)
	if c == nil && !gone {
		applied, end, err := h.behind(asked)
		if err != nil {
			return "", visitor, false, err
		}
		if c, ss, gone = h.lookup(id); c == nil && !gone && applied < end {
			return "", visitor, false, fmt.Errorf("campaign %d not read yet: this collector has read the definitions topic up to offset %d of %d", id, applied, end)
		}
	}
	if c == nil || uint64(n) >= c.Recipients() || !ss.signs(c, n, &mac) {
		return "", visitor, false, nil
	}
	return c.Site, EngagementVisitor(id, n), true, nil
}

// Len returns the number of campaigns held.
func (h *Heads) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.heads)
}

// lookup returns campaign id's head and the secret its tokens are signed
// with; gone reports a campaign deleted on the topic.
func (h *Heads) lookup(id uint64) (c *Campaign, ss *siteSecret, gone bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if c = h.heads[id]; c != nil {
		ss = h.secrets[secretKey{c.Site, c.SecretGen}]
	}
	_, gone = h.deleted[id]
	return c, ss, gone
}

// behind returns the offset the consumer applied and the topic's end
// read after asked: one request to Kafka, made unless one was sent since
// asked, so that a flood of unknown tokens keeps at most one in flight.
func (h *Heads) behind(asked time.Time) (applied, end int64, err error) {
	h.probeMu.Lock()
	defer h.probeMu.Unlock()
	if h.probeAt.Before(asked) {
		h.probeAt = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h.probeEnd, h.probeErr = h.topic.End(ctx)
		cancel()
	}
	return h.topic.Applied(), h.probeEnd, h.probeErr
}
