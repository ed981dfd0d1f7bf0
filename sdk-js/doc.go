// Package sdkjs serves the browser snippet and the demo shop from the Go
// binary, so that no npm build is needed at run time.
//
// The snippet's sources (src/*.js) are embedded and bundled once, at
// startup, by esbuild's Go API with the options of build.mjs; the result is
// byte for byte what `npm run build` writes to dist/sdk.js (the browser
// tests check it), so the size budget measured there holds for what is
// served. Script answers GET /sdk.js with long cache headers and an ETag.
//
// Demo serves the demo shop (demo/, embedded) at /demo/ and its live panel's
// read of the current visitor's profile.
//
// Everything here is read-only after construction and safe for concurrent
// use.
package sdkjs
