// Package logger is affinity's one logger type: every Options.Logger in the
// tree is a [Logger], a printf-style function, and a nil Logger discards.
// There is no package default: cmd/affinity passes log.Printf, tests pass
// t.Logf, and a library left without one stays silent.
//
// One line per call, no trailing newline needed; a message starts with the
// component's name ("builder: ...") and follows the house style of errors.
//
// Errors that strangers cause (a browser's broken connection, a malformed
// request) are counted in metrics and logged through [Throttled], so a flood
// of them costs one line per interval (VictoriaMetrics lib/logger/throttler.go).
// [Logger.Badger] adapts a Logger to Badger's logger interface, keeping its
// warnings and errors and dropping its info and debug chatter.
//
// A Logger is safe for concurrent use when the function it wraps is
// (log.Printf and t.Logf are); Throttled's result always is.
package logger
