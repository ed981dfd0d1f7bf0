// Package catalog reads a shop's product catalog (PUT /v1/catalog/{site}) and
// keeps one product as a compact binary value, so that the profile builder
// can score an event that carries only a product id on the catalog's brand,
// category path, child age range and price.
//
// Parse streams NDJSON, CSV or a YML (yml_catalog) feed row by row: memory is
// bounded per row (Options.MaxLine), not by the catalog's size, and the first
// bad row stops the parse with a *LineError naming its line and the reason.
// A catalog upload is all or nothing: callers validate the whole body before
// they store anything.
//
// AppendProduct / DecodeProduct are the stored form (FORMAT.md beside this
// file); Join fills the attributes an event did not carry from a catalog
// product, the event's own attributes winning.
//
// Ownership: the *Product Parse hands to its callback, and its strings, are
// valid only during the call (they view reused buffers); Clone keeps one.
// A Parser is not safe for concurrent use.
package catalog
