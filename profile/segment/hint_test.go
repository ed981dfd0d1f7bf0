package segment

import (
	"slices"
	"testing"
)

func TestNecessary(t *testing.T) {
	f := func(src string, ok bool, want ...Threshold) {
		t.Helper()
		got, gotOK := mustCompile(t, src).Necessary()
		if gotOK != ok || !slices.Equal(got, want) {
			t.Fatalf("Necessary(%s) = %v, %v; want %v, %v", src, got, gotOK, want, ok)
		}
	}
	f(issueRules[0], true, Threshold{"brand", "Nutrilon", 1}, Threshold{"brand", "Merries", 1}, Threshold{"brand", "Philips", 1})
	f(`interest(category, "baby/food") > 2.5`, true, Threshold{"category", "baby/food", 2.5})
	f(`identified and 2 <= interest(age, "0-3") and (interest(brand, "A") >= 1 or interest(brand, "B") == 3)`, true, Threshold{"age", "0-3", 2})
	f(`interest(brand, "A") >= 1 or identified`, false)
	f(`not interest(brand, "A") < 1`, false)
	f(`interest(brand, "A") >= 0`, false)
	f(`interest(brand, "A") <= 3`, false)
	f(`since(cart) <= 24h`, false)
}
