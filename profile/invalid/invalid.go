package invalid

import "fmt"

// Error is input refused as invalid; its text is the reason, fit to show
// to whoever sent the input. Find it in an error chain with errors.As.
type Error struct {
	err error
}

// Errorf returns an *Error with the message fmt.Errorf(format, args...)
// gives, %w included.
func Errorf(format string, args ...any) error {
	return &Error{err: fmt.Errorf(format, args...)}
}

// Error returns the reason.
func (e *Error) Error() string { return e.err.Error() }

// Unwrap returns the error of the reason, through which errors.As finds
// what it wraps (%w): a *segment.Error, a *catalog.LineError.
func (e *Error) Unwrap() error { return e.err }

// MaxNameLen bounds the name of what the API creates: a segment, a list.
const MaxNameLen = 128

// Name returns nil if name is a valid name of a thing (what: "segment
// name", "list name"): 1..128 bytes of ASCII letters, digits, '_', '-' and
// '.', else an *Error saying so.
func Name(what, name string) error {
	if name == "" || len(name) > MaxNameLen {
		return Errorf("invalid %s %q: want 1..%d characters", what, name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return Errorf("invalid %s %q: want letters, digits, _, - and . only", what, name)
		}
	}
	return nil
}
