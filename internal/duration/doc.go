// Package duration parses the durations of every option, flag and config
// value: Go's form (90s, 15m, 1h30m, 1.5h, 250ms) plus days and weeks
// (14d, 2w, 1d12h), one grammar for the module. The rule language has its
// own whole-number duration literals (profile/segment's lexer), which a
// rule reports errors of by position.
//
// The functions are pure and safe for concurrent use.
package duration
