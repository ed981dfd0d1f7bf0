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
