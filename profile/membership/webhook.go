package membership

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/affinityhq/affinity/profile/invalid"
	"github.com/affinityhq/affinity/tracker/event"
)

// Webhook is where a segment's change records are delivered.
type Webhook struct {
	URL    string
	Secret string
	// Delivered is the sequence number up to which records were delivered
	// (acknowledged with a 2xx).
	Delivered uint64
}

// Headers of a delivery.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
	// keyed with the webhook's secret.
	SignatureHeader = "X-Affinity-Signature"
	// DeliveryHeader carries the delivery id, "<site>/<segment>/<first
	// seq>-<last seq>": a retry carries the same records under the same
	// id; after a restart a retry starts at the same first seq and may
	// carry more. Receivers deduplicate records by their seq — by their
	// "id" behind a cluster, where each node numbers its own feed.
	DeliveryHeader = "X-Affinity-Delivery"
)

// Sign returns the value of SignatureHeader for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// SetWebhook sets the webhook of a segment. Deliveries start with the
// change records sequenced from now on; changing the URL or secret of an
// existing webhook keeps its position.
func (e *Engine) SetWebhook(site, name, rawURL, secret string) error {
	if err := CheckWebhook(rawURL, secret); err != nil {
		return err
	}
	if _, ok, err := e.Definition(site, name); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("no segment %q of site %q", name, site)
		}
		return err
	}
	b := e.db.NewBatch()
	if err := b.ExtSet(appendSegKey(nil, prefixHook, site, name), appendHook(nil, rawURL, secret)); err != nil {
		return err
	}
	posKey := appendSegKey(nil, prefixHookPos, site, name)
	if _, ok, err := e.db.Ext(posKey, nil); err != nil {
		return err
	} else if !ok {
		if err := b.ExtSet(posKey, appendU64(nil, e.lastSeq.Load())); err != nil {
			return err
		}
	}
	return b.Commit()
}

// CheckWebhook returns an *invalid.Error unless rawURL and secret make a
// webhook SetWebhook takes.
func CheckWebhook(rawURL, secret string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid.Errorf("invalid webhook url %q: want http(s)://host/path", rawURL)
	}
	if secret == "" || len(secret) > 1024 {
		return invalid.Errorf("invalid webhook secret: want 1..1024 bytes")
	}
	return nil
}

// GetWebhook returns the webhook of a segment.
func (e *Engine) GetWebhook(site, name string) (w Webhook, ok bool, err error) {
	v, ok, err := e.db.Ext(appendSegKey(nil, prefixHook, site, name), nil)
	if err != nil || !ok {
		return w, false, err
	}
	if w.URL, w.Secret, err = decodeHook(v); err != nil {
		return w, false, err
	}
	if p, ok, err := e.db.Ext(appendSegKey(nil, prefixHookPos, site, name), nil); err != nil {
		return w, false, err
	} else if ok {
		w.Delivered, _ = parseU64(p)
	}
	return w, true, nil
}

// DeleteWebhook stops the deliveries of a segment.
func (e *Engine) DeleteWebhook(site, name string) (bool, error) {
	_, ok, err := e.GetWebhook(site, name)
	if err != nil || !ok {
		return false, err
	}
	b := e.db.NewBatch()
	_ = b.ExtDelete(appendSegKey(nil, prefixHook, site, name))
	_ = b.ExtDelete(appendSegKey(nil, prefixHookPos, site, name))
	return true, b.Commit()
}

// hookState is the delivery state of one webhook, kept by the loop.
type hookState struct {
	backoff time.Duration
	nextTry time.Time
	// retryUpTo is the last seq of a failed delivery: its retry carries
	// the same records, under the same delivery id.
	retryUpTo uint64
}

// webhookLoop delivers every webhook's pending records, batched, retrying
// failures with exponential backoff.
func (e *Engine) webhookLoop() {
	defer e.wg.Done()
	states := map[string]*hookState{}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		type hook struct{ site, name string }
		var hooks []hook
		_ = e.db.ScanExt([]byte{prefixHook}, func(key, _ []byte) bool {
			r := newReader("webhook key", key[1:])
			site, name := str(&r), str(&r)
			if r.Err() == nil {
				hooks = append(hooks, hook{site, name})
			}
			return true
		})
		for _, h := range hooks {
			k := h.site + "\x00" + h.name
			st := states[k]
			if st == nil {
				st = &hookState{}
				states[k] = st
			}
			if time.Now().Before(st.nextTry) {
				continue
			}
			for e.ctx.Err() == nil {
				n, err := e.deliver(h.site, h.name, st)
				if err != nil {
					e.m.deliveryErrors.Inc()
					st.backoff = min(max(2*st.backoff, e.opts.WebhookMinBackoff), e.opts.WebhookMaxBackoff)
					st.nextTry = time.Now().Add(st.backoff)
					e.logf("membership: webhook of segment %q of site %q: %s; retrying in %s", h.name, h.site, err, st.backoff)
					break
				}
				st.backoff = 0
				if n < e.opts.WebhookBatch {
					break
				}
			}
		}
	}
}

// deliver sends the next batch of a webhook's records and, on a 2xx,
// stores the new position. It returns how many records it delivered.
func (e *Engine) deliver(site, name string, st *hookState) (int, error) {
	e.scrubMu.RLock()
	defer e.scrubMu.RUnlock()
	w, ok, err := e.GetWebhook(site, name)
	if err != nil || !ok {
		return 0, err
	}
	var cs []Change
	if st.retryUpTo <= w.Delivered {
		st.retryUpTo = 0
	}
	err = e.Changes(site, name, w.Delivered, func(c *Change) bool {
		if st.retryUpTo > 0 && c.Seq > st.retryUpTo {
			return false
		}
		cs = append(cs, *c)
		return len(cs) < e.opts.WebhookBatch
	})
	if err != nil || len(cs) == 0 {
		return 0, err
	}
	first, last := cs[0].Seq, cs[len(cs)-1].Seq
	st.retryUpTo = last // until a 2xx
	id := site + "/" + name + "/" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10)
	body := append([]byte(nil), `{"delivery":`...)
	body = event.AppendJSONString(body, id)
	body = append(body, `,"site":`...)
	body = event.AppendJSONString(body, site)
	body = append(body, `,"segment":`...)
	body = event.AppendJSONString(body, name)
	body = append(body, `,"changes":[`...)
	for i := range cs {
		if i > 0 {
			body = append(body, ',')
		}
		body = cs[i].AppendJSON(body)
	}
	body = append(body, "]}"...)
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(w.Secret, body))
	req.Header.Set(DeliveryHeader, id)
	resp, err := e.opts.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot POST %d changes to %s: %w", len(cs), w.URL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("POST of %d changes to %s: status %d", len(cs), w.URL, resp.StatusCode)
	}
	e.m.deliveries.Inc()
	st.retryUpTo = 0
	b := e.db.NewBatch()
	// Only if the webhook still exists: a DELETE meanwhile wins.
	if _, ok, err := e.db.Ext(appendSegKey(nil, prefixHook, site, name), nil); err != nil || !ok {
		return 0, err
	}
	if err := b.ExtSet(appendSegKey(nil, prefixHookPos, site, name), appendU64(nil, last)); err != nil {
		return 0, err
	}
	if err := b.Commit(); err != nil {
		return 0, fmt.Errorf("cannot store the position of the webhook of segment %q of site %q: %w", name, site, err)
	}
	return len(cs), nil
}
