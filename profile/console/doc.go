// Package console serves the marketer's web console at /console/ on the
// internal listener: static pages (static/, embedded in the binary, no
// framework, nothing fetched at run time) that call only the public query
// API with the API token, so an email tool can do everything the console
// does. The pages hold no data and are served without the token; the
// token is typed into the login form, kept in the tab's sessionStorage
// (never in a URL) and sent as Authorization: Bearer on every API call.
//
// Pages: Segments (sizes now, entries and exits of the last 24 h from the
// change feeds, backfill progress, size over time from the history API as
// inline SVG), Rule editor (the preview API; a syntax error underlined at
// its position; save and watch the backfill), Campaigns (the campaigns
// API: a report table per arm and group drawn from the report JSON's own
// keys, the conversion uplift with its interval in words and as an SVG
// error bar per arm and variant, the CSV fetched with the token and saved
// from a Blob; a live campaign's report is read again every 5 s),
// Visitor / person lookup.
//
// Concurrency: Handler is stateless and safe for concurrent use.
package console
