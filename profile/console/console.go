package console

import (
	"embed"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/affinityhq/affinity/profile/api"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

//go:embed static
var static embed.FS

// Register serves the console on s under Prefix, without the token (see
// the package doc). Call before s.Serve.
func Register(s *api.Server) {
	s.HandlePublic("/console", Serve)
}

// Serve answers GET and HEAD of the console's files; /console and
// /console/ give index.html.
func Serve(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		api.Error(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed on "+string(ctx.Path())+"; allowed: GET, HEAD")
		return
	}
	p := string(ctx.Path())
	if p == "/console" {
		ctx.Redirect(Prefix, fasthttp.StatusMovedPermanently)
		return
	}
	name := strings.TrimPrefix(p, Prefix)
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(static, "static/"+name)
	if err != nil || strings.Contains(name, "..") {
		api.NoRoute(ctx, "/console/ and its files")
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	ctx.SetContentType(ct)
	// The pages hold no data; a new binary brings new ones.
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-cache")
	ctx.Response.Header.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetBody(b)
}
