package lists

import (
	"bytes"
	"strconv"
	"testing"
)

// listCSV returns an upload of n rows: email, customer_id, a name.
func listCSV(n int) []byte {
	b := []byte("email,customer_id,name\n")
	for i := range n {
		b = append(b, "Person."...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, "@Example.com,c-"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, ",\"Doe, J\"\n"...)
	}
	return b
}

// BenchmarkParse is the parse alone: rows/s of a CSV upload.
func BenchmarkParse(b *testing.B) {
	const n = 100_000
	body := listCSV(n)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rows := 0
		if err := Parse(bytes.NewReader(body), FormatCSV, func(int, []byte, []byte) error { rows++; return nil }); err != nil || rows != 2*n {
			b.Fatalf("got %d values, %v", rows, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkPut is an upload of 100k rows (an email and a customer id each)
// replacing the list, into a real Badger: parse, write the generation,
// count it, flip the head, then Settle the previous one.
func BenchmarkPut(b *testing.B) {
	const n = 100_000
	s := openStore(b)
	body := listCSV(n)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		unlock := s.Lock("shop", "crm")
		m, err := s.Put("shop", "crm", bytes.NewReader(body), FormatCSV)
		if err != nil || m.Emails != n || m.Customers != n {
			b.Fatalf("got %+v, %v", m, err)
		}
		if err := s.Settle(m); err != nil {
			b.Fatal(err)
		}
		unlock()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkScan reads a list of 100k emails in order, as a campaign will.
func BenchmarkScan(b *testing.B) {
	const n = 100_000
	s := openStore(b)
	unlock := s.Lock("shop", "crm")
	if _, err := s.Put("shop", "crm", bytes.NewReader(listCSV(n)), FormatCSV); err != nil {
		b.Fatal(err)
	}
	unlock()
	b.ReportAllocs()
	for b.Loop() {
		rows := 0
		if _, err := s.Scan("shop", "crm", func(email, _ []byte) bool {
			if email != nil {
				rows++
			}
			return true
		}); err != nil || rows != n {
			b.Fatalf("got %d rows, %v", rows, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkContains is the lookup in_list makes: one email, hit or miss.
func BenchmarkContains(b *testing.B) {
	s := openStore(b)
	unlock := s.Lock("shop", "crm")
	if _, err := s.Put("shop", "crm", bytes.NewReader(listCSV(100_000)), FormatCSV); err != nil {
		b.Fatal(err)
	}
	unlock()
	emails := []string{"person.77@example.com", "nobody@example.com"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ok, err := s.Contains("shop", "crm", emails[i&1], "")
		if err != nil || ok != (i&1 == 0) {
			b.Fatalf("got %v, %v", ok, err)
		}
		i++
	}
}
