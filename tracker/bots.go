package tracker

import "bytes"

// botMarkers are lower-case User-Agent fragments of crawlers, link
// previewers, monitors and headless browsers. Matching is by substring on
// the lower-cased agent, which is cheap and catches versioned variants.
var botMarkers = [][]byte{
	[]byte("bot"), // googlebot, bingbot, yandexbot, applebot, ahrefsbot …
	[]byte("crawl"),
	[]byte("spider"),
	[]byte("slurp"),
	[]byte("headless"), // HeadlessChrome
	[]byte("phantomjs"),
	[]byte("puppeteer"),
	[]byte("playwright"),
	[]byte("selenium"),
	[]byte("lighthouse"),
	[]byte("pingdom"),
	[]byte("uptime"),
	[]byte("facebookexternalhit"),
	[]byte("embedly"),
	[]byte("preview"),
	[]byte("python-requests"),
	[]byte("scrapy"),
}

// isBot reports whether the User-Agent ua belongs to a known crawler or
// headless browser. buf is scratch space for the lower-cased agent; the
// possibly grown buffer is returned for reuse.
func isBot(ua, buf []byte) (bool, []byte) {
	if len(ua) == 0 {
		return false, buf
	}
	buf = append(buf[:0], ua...)
	for i, c := range buf {
		if 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	for _, m := range botMarkers {
		if bytes.Contains(buf, m) {
			return true, buf
		}
	}
	return false, buf
}
