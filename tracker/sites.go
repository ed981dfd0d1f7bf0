package tracker

import (
	"fmt"
	"strconv"
	"strings"
)

// Site is one shop that may post events, identified by its public key.
type Site struct {
	Key string
	// Origins lists the browser origins (scheme://host[:port]) allowed to post
	// for this site. Empty means any origin: fine for the demo and for sites
	// that post from a server, not for a production shop.
	Origins []string
	// Rate bounds the events per second the site may post (--site-rate);
	// 0 means no bound. Beyond it the collector answers 429.
	Rate float64
	// Burst is how many events the site may post at once on top of Rate's
	// pace; 0 means Rate rounded up.
	Burst int
	// WriteKeys are the secret keys (--write-key) a server sends, as the
	// HTTP Basic auth username, to post for this site through the
	// Segment-compatible API; several allow a rotation. None: the site
	// takes no server-side events.
	WriteKeys []string
	// RedirectOrigins are the origins (scheme://host[:port], lower case)
	// a campaign click (/e/c/) may redirect to (--redirect-origin); none:
	// every click is refused, as an open redirect.
	RedirectOrigins []string

	bucket *rateBucket // set by New when Rate > 0
}

// AllowsOrigin reports whether a request with the given Origin header may
// post for s. Requests without an Origin (servers, the image pixel in some
// browsers) are allowed: the origin check is a CORS courtesy, not auth.
func (s *Site) AllowsOrigin(origin []byte) bool {
	if len(origin) == 0 || len(s.Origins) == 0 {
		return true
	}
	for _, o := range s.Origins {
		if o == string(origin) {
			return true
		}
	}
	return false
}

// ParseSites parses site specs of the form KEY or KEY=ORIGIN|ORIGIN…, several
// per string separated by commas: "demo,shop=https://shop.example|https://www.shop.example".
func ParseSites(specs []string) ([]Site, error) {
	var sites []Site
	seen := map[string]bool{}
	for _, one := range specItems(specs) {
		key, origins, _ := strings.Cut(one, "=")
		if key == "" || len(key) > 64 || strings.ContainsAny(key, " /|") {
			return nil, fmt.Errorf("cannot parse site %q: the key must be 1-64 bytes without spaces, '/' or '|'", one)
		}
		if seen[key] {
			return nil, fmt.Errorf("cannot parse site %q: key %q given twice", one, key)
		}
		seen[key] = true
		s := Site{Key: key}
		if origins != "" {
			for _, o := range strings.Split(origins, "|") {
				o = strings.TrimRight(strings.TrimSpace(o), "/")
				if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
					return nil, fmt.Errorf("cannot parse site %q: origin %q must start with http:// or https://", one, o)
				}
				s.Origins = append(s.Origins, o)
			}
		}
		sites = append(sites, s)
	}
	if len(sites) == 0 {
		return nil, fmt.Errorf("no site given: pass at least one --site KEY")
	}
	return sites, nil
}

// specItems returns the items of flag values that may each hold several,
// separated by commas: trimmed, empty ones dropped.
func specItems(specs []string) []string {
	var items []string
	for _, spec := range specs {
		for _, one := range strings.Split(spec, ",") {
			if one = strings.TrimSpace(one); one != "" {
				items = append(items, one)
			}
		}
	}
	return items
}

// MinWriteKeyLen is the shortest secret write key: a guessable secret
// would let anyone post server-side events, which are trusted with
// customer ids.
const MinWriteKeyLen = 16

// ParseWriteKeys parses --write-key specs, SITE=SECRET (repeatable,
// comma-separated), into the WriteKeys of sites. A secret is at least
// MinWriteKeyLen bytes of printable ASCII without ',' or ':' (the end of a
// Basic auth username), is never a site's public key, and names one site.
func ParseWriteKeys(specs []string, sites []Site) error {
	owner := map[string]string{}
	for _, one := range specItems(specs) {
		key, secret, ok := strings.Cut(one, "=")
		if !ok || key == "" {
			return fmt.Errorf("cannot parse --write-key %s: want SITE=SECRET", quoteSecret(one))
		}
		i := 0
		for i < len(sites) && sites[i].Key != key {
			i++
		}
		if i == len(sites) {
			return fmt.Errorf("cannot parse --write-key for site %q: no such site: list it in --site first", key)
		}
		if len(secret) < MinWriteKeyLen || strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r > '~' || r == ':' }) {
			return fmt.Errorf("cannot parse --write-key for site %q: the secret %s must be at least %d bytes of printable ASCII without spaces or ':'",
				key, quoteSecret(secret), MinWriteKeyLen)
		}
		for _, s := range sites {
			if s.Key == secret {
				return fmt.Errorf("cannot parse --write-key for site %q: the secret is the public key of site %q, which every page shows: choose a secret", key, s.Key)
			}
		}
		if prev, dup := owner[secret]; dup {
			return fmt.Errorf("cannot parse --write-key for site %q: the secret %s is already the write key of site %q", key, quoteSecret(secret), prev)
		}
		owner[secret] = key
		sites[i].WriteKeys = append(sites[i].WriteKeys, secret)
	}
	return nil
}

// quoteSecret quotes the first bytes of a secret for an error message: enough
// to tell which one was meant, not enough to leak it into a log.
func quoteSecret(s string) string {
	if len(s) <= 4 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:4]) + "…"
}
