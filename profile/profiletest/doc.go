// Package profiletest starts the real profile side for tests: an embedded
// log on a temporary directory, the state DB, segment membership (or
// another builder Hook), the builder, and optionally the query API on a
// loopback fasthttp listener, all on a clock the test sets. It also holds
// the one set of visitor, event and batch fixtures the profile packages'
// tests build their input from.
//
// It wires the parts itself rather than through profile/service because
// tests choose the builder's Hook and adjust membership and query options
// that a node does not expose; service's own tests use service.Open.
//
// An Env belongs to one test: its methods call t.Fatal and must run on the
// test's goroutine. The builder, membership and the API run in their own
// goroutines as in production; Env.Wait is the point where the test sees
// everything appended so far applied.
package profiletest
