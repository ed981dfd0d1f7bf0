// Package profile turns a visitor's events into a profile of decaying
// interests and reads it: the scoring configuration (Config), the Profile
// and its Apply, the read side (Score, Top, Share, threshold and decay
// times, the interest-index order key, the JSON of GET /v1/visitors) and
// the profile's binary codec (AppendProfile, DecodeProfile; FORMAT.md).
//
// # Scoring
//
// Forward decay with a fixed landmark L (Landmark), in log space, as
// DESIGN.md "Scoring: forward decay" says: per (dimension, value) a profile
// stores LogG = log2 Σ wᵢ·2^((tᵢ − L)/H), updated with log-add-exp; the
// score at T is 2^(LogG − (T − L)/H). An update never reads the clock and
// never touches other values; the same events in any order give the same
// profile (to float rounding). Negative weights keep separate positive and
// negative sums (Entry). Within a dimension the order of values and their
// shares change only with events, never with time.
//
// # Ownership and concurrency
//
// A Config is built once (DefaultConfig, Set*) and then only read: share it
// freely. A Profile belongs to one goroutine at a time. Apply copies what it
// keeps from the event; DecodeProfile copies from its input; so a Profile's
// strings never alias a caller's buffer. The ScoreChange values Apply
// returns hold the profile's strings and stay valid.
package profile
