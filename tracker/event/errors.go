package event

import "github.com/affinityhq/affinity/internal/quote"

// Reason codes of a ValidationError. Each is a short, stable metrics label:
// the collector counts refused batches by reason. Never rename one.
const (
	ReasonBadJSON       = "bad_json"        // not JSON, a syntax error, not an object, a duplicate key
	ReasonBadBase64     = "bad_base64"      // the pixel's d parameter is not base64url
	ReasonMissingSite   = "missing_site"    // site absent, null or ""
	ReasonBadSite       = "bad_site"        // site not a string or too long
	ReasonBadVisitor    = "bad_visitor"     // v absent or not a canonical UUID
	ReasonMissingEvents = "missing_events"  // events absent, null or []
	ReasonTooManyEvents = "too_many_events" // more than Options.MaxEvents events
	ReasonBadEvent      = "bad_event"       // events is not an array, or an element is not an object
	ReasonBadEventID    = "bad_event_id"    // id absent or not a canonical UUID
	ReasonDupEventID    = "dup_event_id"    // two events of the batch share an id
	ReasonBadType       = "bad_type"        // t absent or not a known event type
	ReasonBadTS         = "bad_ts"          // ts absent or not an integer
	ReasonTSFuture      = "ts_future"       // ts more than Options.MaxFuture after the receive time
	ReasonTSTooOld      = "ts_too_old"      // ts more than Options.AcceptWindow before the receive time
	ReasonBadField      = "bad_field"       // an optional field of the wrong JSON type, range or length
	ReasonTooManyItems  = "too_many_items"  // an order with more than Options.MaxItems items
	ReasonTooManyTraits = "too_many_traits" // traits with more than Options.MaxTraits keys
)

// Reasons returns every reason code a ValidationError may carry, e.g. to
// register one counter per reason up front.
func Reasons() []string {
	return []string{
		ReasonBadJSON, ReasonBadBase64, ReasonMissingSite, ReasonBadSite,
		ReasonBadVisitor, ReasonMissingEvents, ReasonTooManyEvents, ReasonBadEvent,
		ReasonBadEventID, ReasonDupEventID, ReasonBadType, ReasonBadTS,
		ReasonTSFuture, ReasonTSTooOld, ReasonBadField, ReasonTooManyItems,
		ReasonTooManyTraits,
	}
}

// ValidationError is why a browser's batch was refused, whole. Error() is one
// line meant for the 4xx response body and throttled logs, e.g.
//
//	events[3].id: invalid UUID "abc"
type ValidationError struct {
	// Reason is one of the Reason* codes.
	Reason string
	// Event is the index of the offending event in "events", or -1 when the
	// error is not about one event.
	Event int
	// Field is the JSON path of the offending value, e.g. "events[3].id";
	// "" when the error is about the body as a whole.
	Field string
	// Msg says what is wrong with the value, quoting it (at most
	// quote.Max bytes of it).
	Msg string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// snippet returns raw JSON text for an error message: cut like quote.Value and
// kept on one line.
func snippet(raw []byte) string {
	raw, cut := quote.Cut(raw)
	b := make([]byte, 0, len(raw)+3)
	for _, c := range raw {
		if c == '\n' || c == '\r' || c == '\t' {
			c = ' '
		}
		b = append(b, c)
	}
	if cut {
		b = append(b, "…"...)
	}
	return string(b)
}
