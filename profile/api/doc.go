// Package api is affinity's internal listener (--api-listen): the query API
// that email tools, CRMs and dashboards call, plus /healthz, /metrics and
// /debug/pprof for operators.
//
// Every path but /healthz needs "Authorization: Bearer <token>"; the token is
// compared in constant time. Routes are registered before Serve and never
// change afterwards, so the router needs no locking.
package api
