package sdkjs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
	"github.com/valyala/fasthttp"
)

//go:embed src/*.js
var srcFS embed.FS

// entry is the snippet's entry point inside srcFS, as in build.mjs.
const entry = "src/affinity.js"

// MaxGzipBytes is the snippet's size budget, min+gzip at level 9 (the one
// build.mjs enforces).
const MaxGzipBytes = 2560

// CacheControl is what /sdk.js answers with: caches may keep the snippet for
// a day, then revalidate it with its ETag (a 304 costs a few bytes).
const CacheControl = "public, max-age=86400"

// Script is the built snippet, ready to serve. Create it with Build.
type Script struct {
	// Code is the minified IIFE.
	Code []byte
	// Gzip is Code compressed at level 9, served to clients that accept gzip.
	Gzip []byte
	// ETag is the strong entity tag of Code: a quoted hash of its bytes.
	// The gzip representation has its own tag, ETag with "-gz" inside the
	// quotes.
	ETag   string
	etagGz string
}

// Build bundles and minifies the embedded sources with esbuild, exactly as
// build.mjs does, and checks the size budget.
func Build() (*Script, error) {
	res := api.Build(api.BuildOptions{
		EntryPoints:       []string{entry},
		Bundle:            true,
		Format:            api.FormatIIFE,
		Target:            api.ES2017,
		MinifyWhitespace:  true,
		MinifyIdentifiers: true,
		MinifySyntax:      true,
		LegalComments:     api.LegalCommentsNone,
		Charset:           api.CharsetUTF8,
		Write:             false,
		LogLevel:          api.LogLevelSilent,
		Plugins:           []api.Plugin{embedPlugin},
	})
	if len(res.Errors) > 0 {
		msgs := api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage})
		return nil, fmt.Errorf("cannot build the snippet from %s: %s", entry, strings.Join(msgs, ""))
	}
	if len(res.OutputFiles) != 1 {
		return nil, fmt.Errorf("BUG: esbuild wrote %d files for %s; want 1", len(res.OutputFiles), entry)
	}
	return newScript(res.OutputFiles[0].Contents)
}

func newScript(code []byte) (*Script, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(code); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() > MaxGzipBytes {
		return nil, fmt.Errorf("BUG: the snippet is %d bytes min+gzip, above its budget of %d bytes", buf.Len(), MaxGzipBytes)
	}
	sum := sha256.Sum256(code)
	h := hex.EncodeToString(sum[:12])
	return &Script{Code: code, Gzip: buf.Bytes(), ETag: `"` + h + `"`, etagGz: `"` + h + `-gz"`}, nil
}

// embedPlugin makes esbuild read the sources from srcFS instead of the disk:
// the binary may run anywhere.
var embedPlugin = api.Plugin{
	Name: "sdkjs-embed",
	Setup: func(b api.PluginBuild) {
		b.OnResolve(api.OnResolveOptions{Filter: `.*`}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			p := a.Path
			if a.Kind != api.ResolveEntryPoint {
				if !strings.HasPrefix(p, "./") && !strings.HasPrefix(p, "../") {
					return api.OnResolveResult{}, fmt.Errorf("cannot resolve import %q in %s: the snippet imports only its own files", p, a.Importer)
				}
				p = path.Join(path.Dir(a.Importer), p)
			}
			p = path.Clean(p) // the entry point comes as "./src/affinity.js"
			return api.OnResolveResult{Path: p, Namespace: "sdkjs"}, nil
		})
		b.OnLoad(api.OnLoadOptions{Filter: `.*`, Namespace: "sdkjs"}, func(a api.OnLoadArgs) (api.OnLoadResult, error) {
			data, err := srcFS.ReadFile(a.Path)
			if err != nil {
				return api.OnLoadResult{}, fmt.Errorf("cannot read embedded source %s: %w", a.Path, err)
			}
			s := string(data)
			return api.OnLoadResult{Contents: &s, Loader: api.LoaderJS}, nil
		})
	},
}

// Serve answers GET and HEAD of the snippet: gzip when the client accepts
// it, 304 when If-None-Match names the current ETag, cacheable for a day by
// anyone (it carries nothing private). Other methods get 405.
func (s *Script) Serve(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("method not allowed: use GET\n", fasthttp.StatusMethodNotAllowed)
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD") // after Error, which resets headers
		return
	}
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderCacheControl, CacheControl)
	h.Set(fasthttp.HeaderVary, "Accept-Encoding")
	// A script tag with crossorigin="anonymous" (for error details or SRI)
	// needs CORS; the snippet is public anyway.
	h.Set(fasthttp.HeaderAccessControlAllowOrigin, "*")
	h.Set(fasthttp.HeaderXContentTypeOptions, "nosniff")
	body, etag := s.Code, s.ETag
	if ctx.Request.Header.HasAcceptEncoding("gzip") {
		body, etag = s.Gzip, s.etagGz
		h.Set(fasthttp.HeaderContentEncoding, "gzip")
	}
	h.Set(fasthttp.HeaderETag, etag)
	if inm := ctx.Request.Header.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 && s.matches(inm) {
		h.Del(fasthttp.HeaderContentEncoding)
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetContentType("text/javascript; charset=utf-8")
	ctx.SetBody(body)
}

// matches reports whether the If-None-Match list inm names either
// representation's tag (weak comparison, as RFC 9110 wants for
// If-None-Match), or is "*".
func (s *Script) matches(inm []byte) bool {
	for _, t := range bytes.Split(inm, []byte{','}) {
		t = bytes.TrimSpace(t)
		t = bytes.TrimPrefix(t, []byte("W/"))
		if string(t) == "*" || string(t) == s.ETag || string(t) == s.etagGz {
			return true
		}
	}
	return false
}

// ErrNoVisitor is returned by a VisitorSource that has no profile of the
// visitor (nothing of theirs applied yet).
var ErrNoVisitor = errors.New("no profile of this visitor yet")
