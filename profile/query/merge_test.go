package query

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/affinityhq/affinity/storage/state"
	"github.com/affinityhq/affinity/tracker/event"
)

// row is an NDJSON member row of visitor n.
func row(n int) string {
	return fmt.Sprintf(`{"visitor":"00000000-0000-4000-8000-%012d","email":null}`+"\n", n)
}

func rows(ns ...int) string {
	var b strings.Builder
	for _, n := range ns {
		b.WriteString(row(n))
	}
	return b.String()
}

func TestMergeMemberRows(t *testing.T) {
	cursor := `{"cursor":"x"}` + "\n"
	f := func(name string, streams []string, limit int, want string, wantMore bool, wantErr string) {
		t.Helper()
		m := merger{cmp: cmpMemberRows, write: writeRow}
		for i, s := range streams {
			m.srcs = append(m.srcs, newLineSource(fmt.Sprintf("node%d", i), strings.NewReader(s)))
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		res := m.merge(w, limit)
		_ = w.Flush()
		if got := out.String(); got != want {
			t.Errorf("%s: rows\n%s; want\n%s", name, got, want)
		}
		if res.more != wantMore {
			t.Errorf("%s: more = %v; want %v", name, res.more, wantMore)
		}
		gotErr := ""
		if res.err != nil {
			gotErr = res.err.Error()
		}
		if !strings.Contains(gotErr, wantErr) || (wantErr == "") != (gotErr == "") {
			t.Errorf("%s: err %q; want one containing %q", name, gotErr, wantErr)
		}
		if res.err == nil && res.n != strings.Count(want, "\n") {
			t.Errorf("%s: n = %d; want %d", name, res.n, strings.Count(want, "\n"))
		}
	}
	f("interleaved", []string{rows(1, 4, 5), rows(2, 3, 6)}, 0, rows(1, 2, 3, 4, 5, 6), false, "")
	f("one empty", []string{"", rows(2, 3)}, 0, rows(2, 3), false, "")
	f("all empty", []string{"", ""}, 0, "", false, "")
	f("three owners", []string{rows(3), rows(1, 9), rows(2, 8)}, 0, rows(1, 2, 3, 8, 9), false, "")
	// Each owner sends at most limit rows, then a cursor when it has more.
	f("limit cuts the merge", []string{rows(1, 4) + cursor, rows(2, 3) + cursor}, 2, rows(1, 2), true, "")
	f("limit at an owner's end, it has more", []string{rows(1, 2) + cursor, rows(5)}, 2, rows(1, 2), true, "")
	f("limit exactly the rows", []string{rows(1), rows(2)}, 2, rows(1, 2), false, "")
	f("fewer than limit", []string{rows(1), rows(2)}, 5, rows(1, 2), false, "")
	f("owner error line", []string{rows(1, 3), rows(2) + `{"error":"disk gone"}` + "\n"}, 0, rows(1, 2), false, `disk gone`)
	f("owner stream cut mid-row", []string{rows(1, 3), rows(2) + row(4)[:20]}, 0, rows(1, 2), false, "ended mid-row")
}

func TestMergeBrokenStream(t *testing.T) {
	m := merger{cmp: cmpMemberRows, write: writeRow, srcs: []*lineSource{
		newLineSource("ok", strings.NewReader(rows(1, 3))),
		newLineSource("broken", iotest.TimeoutReader(strings.NewReader(rows(2, 4)))),
	}}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	res := m.merge(w, 0)
	if res.err == nil || !errors.Is(res.err, iotest.ErrTimeout) || res.clientGone {
		t.Fatalf("err = %v (client gone %v); want the broken stream's", res.err, res.clientGone)
	}
}

func TestMergeLongRows(t *testing.T) {
	long := fmt.Sprintf(`{"visitor":"00000000-0000-4000-8000-%012d","facts":"%s"}`+"\n", 2, strings.Repeat("x", 3*mergeBufSize))
	m := merger{cmp: cmpMemberRows, write: writeRow, srcs: []*lineSource{
		newLineSource("a", strings.NewReader(rows(1, 3))),
		newLineSource("b", strings.NewReader(long+row(4))),
	}}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if res := m.merge(w, 0); res.err != nil {
		t.Fatal(res.err)
	}
	_ = w.Flush()
	if want := row(1) + long + row(3) + row(4); out.String() != want {
		t.Fatalf("got %d bytes; want %d", out.Len(), len(want))
	}
}

func TestMergeInterestRows(t *testing.T) {
	type in struct {
		key uint64
		v   int
	}
	line := func(r in) string {
		return string(appendInterestKey(nil, r.key)) + row(r.v)
	}
	f := func(name string, a, b []in, limit int, want []in, wantLast state.InterestPos) {
		t.Helper()
		var sa, sb string
		for _, r := range a {
			sa += line(r)
		}
		for _, r := range b {
			sb += line(r)
		}
		m := merger{cmp: cmpInterestRows, srcs: []*lineSource{newLineSource("a", strings.NewReader(sa)), newLineSource("b", strings.NewReader(sb))},
			write: func(w *bufio.Writer, row []byte) error { _, err := w.Write(row[interestKeyLen:]); return err }}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if res := m.merge(w, limit); res.err != nil {
			t.Fatalf("%s: %v", name, res.err)
		}
		_ = w.Flush()
		var ws string
		for _, r := range want {
			ws += row(r.v)
		}
		if out.String() != ws {
			t.Errorf("%s: got\n%s; want\n%s", name, out.String(), ws)
		}
		pos, err := interestPos(m.last)
		if err != nil || pos != wantLast {
			t.Errorf("%s: last %+v (%v); want %+v", name, pos, err, wantLast)
		}
	}
	vis := func(n int) [16]byte {
		v, _ := event.ParseUUID([]byte(row(n)[12:48]))
		return v
	}
	// Order keys ascend; equal keys go by visitor.
	f("by key", []in{{1, 9}, {7, 1}}, []in{{3, 5}, {1 << 60, 2}}, 0, []in{{1, 9}, {3, 5}, {7, 1}, {1 << 60, 2}}, state.InterestPos{Key: 1 << 60, Visitor: vis(2)})
	f("ties by visitor", []in{{5, 2}, {5, 4}}, []in{{5, 1}, {5, 3}}, 3, []in{{5, 1}, {5, 2}, {5, 3}}, state.InterestPos{Key: 5, Visitor: vis(3)})
}

func TestPartitionsHeader(t *testing.T) {
	for _, s := range []string{"0", "0,3,5", "7,2"} {
		parts, err := parsePartitions([]byte(s))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got := string(appendPartitions(nil, parts)); got != s {
			t.Errorf("%q: round trip gives %q", s, got)
		}
	}
	for _, s := range []string{"", ",", "1,", "a", "-1", "1,1", "70000", "1,,2"} {
		if _, err := parsePartitions([]byte(s)); err == nil || !strings.Contains(err.Error(), "invalid X-Affinity-Partitions") {
			t.Errorf("%q: err %v; want invalid X-Affinity-Partitions", s, err)
		}
	}
}

func BenchmarkMergeMembers(b *testing.B) {
	for _, owners := range []int{2, 4} {
		b.Run(fmt.Sprintf("owners=%d", owners), func(b *testing.B) {
			const perOwner = 10000
			streams := make([][]byte, owners)
			for i := range perOwner * owners {
				streams[i%owners] = append(streams[i%owners], row(i)...)
			}
			benchMerge(b, streams, perOwner*owners, &merger{cmp: cmpMemberRows, write: writeRow}, nil)
		})
	}
}

// benchMerge merges the owners' streams with m b.N times, calling reset
// (if set) before each merge, and reports the time per row.
func benchMerge(b *testing.B, streams [][]byte, rows int, m *merger, reset func()) {
	total := 0
	for _, s := range streams {
		total += len(s)
	}
	readers := make([]*bytes.Reader, len(streams))
	for i := range streams {
		readers[i] = bytes.NewReader(streams[i])
	}
	w := bufio.NewWriterSize(nopWriter{}, exportChunk)
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if reset != nil {
			reset()
		}
		m.srcs = m.srcs[:0]
		for i, r := range readers {
			r.Reset(streams[i])
			m.srcs = append(m.srcs, newLineSource("owner", r))
		}
		if res := m.merge(w, 0); res.err != nil || res.n != rows {
			b.Fatalf("merged %d rows: %v", res.n, res.err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// FuzzParsePartitions: the partitions header another node sends either
// parses into distinct partitions that encode and parse back the same, or
// is refused with the header named.
func FuzzParsePartitions(f *testing.F) {
	for _, s := range []string{"0", "0,3,5", "1,1", "", ",", "65536", "-1", "2,x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := parsePartitions([]byte(s))
		if err != nil {
			if !strings.Contains(err.Error(), "invalid X-Affinity-Partitions") {
				t.Fatalf("%q: error %q does not name the header", s, err)
			}
			return
		}
		again, err := parsePartitions(appendPartitions(nil, parts))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(parts) {
			t.Fatalf("%q parses to %v, which encodes and parses to %v, %v", s, parts, again, err)
		}
	})
}

// FuzzMergeStreams merges what two owners sent, whatever it is: no
// panic, and every row written is a row one of them sent.
func FuzzMergeStreams(f *testing.F) {
	cursorLine := `{"cursor":"x"}` + "\n"
	f.Add(rows(1, 4), rows(2, 3), 0, false)
	f.Add(rows(1, 4)+cursorLine, rows(2)+`{"error":"x"}`+"\n", 2, false)
	f.Add(string(appendInterestKey(nil, 7))+row(1), string(appendInterestKey(nil, 3))+row(2)+cursorLine, 1, true)
	f.Add("", "\n\n{", 0, true)
	f.Fuzz(func(t *testing.T, a, b string, limit int, interests bool) {
		m := merger{cmp: cmpMemberRows, write: writeRow, srcs: []*lineSource{newLineSource("a", strings.NewReader(a)), newLineSource("b", strings.NewReader(b))}}
		if interests {
			m.cmp = cmpInterestRows
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		res := m.merge(w, max(limit, 0)%8)
		_ = w.Flush()
		for _, line := range strings.SplitAfter(out.String(), "\n") {
			if line != "" && !strings.Contains(a, line) && !strings.Contains(b, line) {
				t.Fatalf("merged row %q is no owner's", line)
			}
		}
		if strings.Count(out.String(), "\n") != res.n {
			t.Fatalf("%d rows written; merge says %d", strings.Count(out.String(), "\n"), res.n)
		}
		if interests && res.n > 0 {
			_, _ = interestPos(m.last) // a bad row is an error, not a panic
		}
	})
}

// TestMergeCSVRecords: a CSV row whose quoted field holds line breaks is
// one record of the merge, wherever its lines fall.
func TestMergeCSVRecords(t *testing.T) {
	csvRow := func(n int, name string) string {
		return fmt.Sprintf("00000000-0000-4000-8000-%012d,,2026-01-31T00:00:00.000Z,%s\r\n", n, name)
	}
	a := csvRow(1, `"Ann ""A"",\r\nsecond line\nthird"`) + csvRow(4, "x")
	b := csvRow(2, "y") + csvRow(3, `"one\ntwo"`)
	m := merger{cmp: cmpCSVRows, write: writeRow, srcs: []*lineSource{
		{name: "a", csv: true, r: bufio.NewReaderSize(strings.NewReader(a), 16)},
		{name: "b", csv: true, r: bufio.NewReaderSize(strings.NewReader(b), 16)},
	}}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if res := m.merge(w, 3); res.err != nil || res.n != 3 || !res.more {
		t.Fatalf("merge = %+v; want 3 rows and more", res)
	}
	_ = w.Flush()
	if want := csvRow(1, `"Ann ""A"",\r\nsecond line\nthird"`) + csvRow(2, "y") + csvRow(3, `"one\ntwo"`); out.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", out.String(), want)
	}
	if got := string(span(m.last, 0, 36)); got != "00000000-0000-4000-8000-000000000003" {
		t.Fatalf("last row's visitor %q; want the third's", got)
	}
}
