package segment

import (
	"errors"
	"slices"
	"testing"
)

// issueRules are the spellings issue 4 requires, verbatim.
var issueRules = []string{
	`top(age) == "0-3" and (interest(brand, "Nutrilon") >= 1 or interest(brand, "Merries") >= 1 or interest(brand, "Philips") >= 1)`,
	`since(cart) <= 24h and since(purchase) > since(cart)`,
	`first(purchase) <= 30d`,
	`count(purchase, 180d) >= 2`,
	`count(purchase) >= 2 and since(purchase) > 60d and since(purchase) <= 365d`,
	`count(purchase) >= 1 and since(purchase) > 365d`,
	`lifecycle == "active"`,
	`count(purchase) >= 3 and since(purchase) > 180d`,
	`rfm.r >= 4 and rfm.m >= 4`,
	`until_birthday <= 7d`,
	`identified`,
	`not identified`,
	`share(brand, "Merries") >= 0.5`,
	`interest(category, "baby/food") > 2.5`,
}

func TestParseValid(t *testing.T) {
	f := func(src, canonical string) {
		t.Helper()
		r, err := Compile(src, DefaultConfig())
		if err != nil {
			t.Fatalf("Compile(%q): %v", src, err)
		}
		if got := r.String(); got != canonical {
			t.Fatalf("Compile(%q).String() = %q; want %q", src, got, canonical)
		}
		// the canonical form parses to itself
		r2, err := Compile(canonical, DefaultConfig())
		if err != nil {
			t.Fatalf("Compile(canonical %q): %v", canonical, err)
		}
		if got := r2.String(); got != canonical {
			t.Fatalf("canonical %q re-prints as %q", canonical, got)
		}
	}
	for _, src := range issueRules {
		f(src, src)
	}
	f(`lifecycle == "lost" or lifecycle == "lapsing"`, `lifecycle == "lost" or lifecycle == "lapsing"`)
	f(`  identified&&!(rfm.f>=2||rfm.r<2)`, `identified and not (rfm.f >= 2 or rfm.r < 2)`)
	f(`not not identified`, `not not identified`)
	f(`identified and (identified)`, `identified and identified`)
	f(`(identified or identified) and identified`, `(identified or identified) and identified`)
	f(`identified or identified and not identified`, `identified or identified and not identified`)
	f(`since(view) < 1d12h`, `since(view) < 1d12h`)
	f(`since(view) >= 2w`, `since(view) >= 2w`)
	f(`first(identify) != 90s and since(pageview) == 15m`, `first(identify) != 90s and since(pageview) == 15m`)
	f(`count(uncart, 1w) > count(cart, 7d)`, `count(uncart, 1w) > count(cart, 7d)`)
	f(`interest(brand, "A") > interest(brand, "B")`, `interest(brand, "A") > interest(brand, "B")`)
	f(`0.5 <= share(price, "10-25")`, `0.5 <= share(price, "10-25")`)
	f(`interest(product, "sku-1") >= -1.5`, `interest(product, "sku-1") >= -1.5`)
	f(`trait("city") == "Paris" and top(category) != ""`, `trait("city") == "Paris" and top(category) != ""`)
	f(`top(brand) == "Say \"hi\" \\ o/"`, `top(brand) == "Say \"hi\" \\ o/"`)
	f(`since(cart) > since(purchase) and first(view) <= since(view)`, `since(cart) > since(purchase) and first(view) <= since(view)`)
	f(`lifecycle == top(age)`, `lifecycle == top(age)`)
	f(`rfm.r == rfm.f`, `rfm.r == rfm.f`)
	f(`in_list( "crm-under-3" )&&count(view)>=1`, `in_list("crm-under-3") and count(view) >= 1`)
	f(`not in_list("a.b_C")`, `not in_list("a.b_C")`)
	f(`received( "7" ) and not converted("7")`, `received("7") and not converted("7")`)
}

func TestParseErrors(t *testing.T) {
	f := func(src string, pos int, want string) {
		t.Helper()
		_, err := Compile(src, DefaultConfig())
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("Compile(%q) = %v; want an *Error", src, err)
		}
		if pe.Pos != pos || pe.Error() != want || err.Error() != "invalid rule: "+want {
			t.Fatalf("Compile(%q):\n got  %q (pos %d)\n want %q (pos %d)", src, err, pe.Pos, want, pos)
		}
	}
	f(``, 1, `at 1: expected a condition or a term like interest(brand, "X"), since(cart), count(purchase, 30d), identified, in_list("crm"), found an empty rule`)
	f(`since(cart) <= 24`, 16, `at 16: expected a duration like 24h or 7d, found "24"`)
	f(`since(cart) <= 24 and identified`, 16, `at 16: expected a duration like 24h or 7d, found "24"`)
	f(`since(cart) <= 24x`, 18, `at 18: expected a duration unit s, m, h, d or w, found "x"`)
	f(`since(cart) <= 1.5h`, 16, `at 16: expected a number like 2.5 or a whole-number duration like 36h, found "1.5h"`)
	f(`since(click) <= 24h`, 7, `at 7: expected an event type: pageview, view, cart, uncart, purchase, identify or custom, found "click"`)
	f(`top(color) == "red"`, 5, `at 5: expected a dimension: brand, category, age, price or product, found "color"`)
	f(`top(age) = "0-3"`, 10, `at 10: expected == (a single = is not an operator), found "="`)
	f(`top(age) == 3`, 13, `at 13: expected a string like "0-3", found "3"`)
	f(`top(age) < "0-3"`, 10, `at 10: expected == or != to compare strings, found "<"`)
	f(`interest(brand, Nutrilon) >= 1`, 17, `at 17: expected a quoted brand like "Merries", found "Nutrilon"`)
	f(`interest(brand "Nutrilon") >= 1`, 16, `at 16: expected , then a quoted brand, found "\"Nutrilon\""`)
	f(`interest(brand, "Nutrilon") >= 1d`, 32, `at 32: expected a number like 2.5, found "1d"`)
	f(`interest(brand, "Nutrilon")`, 28, `at 28: expected a comparison (== != < <= > >=) after interest(brand, "Nutrilon"), found end of rule`)
	f(`(identified or not identified`, 30, `at 30: expected and, or or ) to close the ( at 1, found end of rule`)
	f(`identified)`, 11, `at 11: expected and, or or the end of the rule (this ) closes nothing), found ")"`)
	f(`identified identified`, 12, `at 12: expected and, or or the end of the rule, found "identified"`)
	f(`identified == 1`, 12, `at 12: expected and, or or the end of the rule (identified is a condition, not a value to compare), found "=="`)
	f(`count(purchase, 0d) > 1`, 17, `at 17: expected a window like 180d, found "0d"`)
	f(`count(purchase 180d) > 1`, 16, `at 16: expected ) or , and a window like 180d, found "180d"`)
	f(`rfm.x >= 4`, 5, `at 5: expected r, f or m after rfm., found "x"`)
	f(`rfm >= 4`, 5, `at 5: expected . after rfm (rfm.r, rfm.f or rfm.m), found ">="`)
	f(`lifecycle == "actve"`, 14, `at 14: expected a lifecycle stage: "prospect", "new", "active", "lapsing" or "lost", found "actve"`)
	f(`top(age) == "0-3`, 17, `at 17: expected a closing " for the string at 13, found end of rule`)
	f(`top(age) == "a\n"`, 15, `at 15: expected \" or \\ (the only escapes in a string), found "\\n"`)
	f(`since(cart) < count(cart, 1d)`, 15, `at 15: expected a duration like 24h or 7d, found "count(cart, 1d)"`)
	f(`since(cart) < until_birthday`, 15, `at 15: expected a constant to compare since(cart) with (both sides change with time at different rates), found "until_birthday"`)
	f(`interest(brand, "A") > interest(age, "0-3")`, 24, `at 24: expected a constant to compare interest(brand, "A") with (both sides change with time at different rates), found "interest(age, \"0-3\")"`)
	f(`loyalty > 3`, 1, `at 1: expected a condition or a term like interest(brand, "X"), since(cart), count(purchase, 30d), identified, in_list("crm"), found "loyalty"`)
	f(`identified and`, 15, `at 15: expected a condition or a term like interest(brand, "X"), since(cart), count(purchase, 30d), identified, in_list("crm"), found end of rule`)
	f(`since(cart) <= -5d`, 16, `at 16: expected a duration without a sign, found "-5d"`)
	f(`since(cart) <= 99999999999w`, 16, `at 16: expected a duration of at most 10000 years, found "99999999999w"`)
	f(`identified # comment`, 12, `at 12: expected a term, an operator or a parenthesis, found "#"`)
	f(`share(brand, "M") >= 0.`, 24, `at 24: expected a digit after the decimal point, found end of rule`)
	f(`since(cart`, 11, `at 11: expected ) to close since(, found end of rule`)
	f(`converted(7)`, 11, `at 11: expected a quoted campaign id like "7", found "7"`)
	f(`received("07")`, 10, `at 10: expected a quoted campaign id like "7", found "\"07\""`)
	f(`in_list(crm)`, 9, `at 9: expected a quoted list name like "crm-under-3" (1..128 letters, digits, _, - and .), found "crm"`)
	f(`in_list("a b")`, 9, `at 9: expected a quoted list name like "crm-under-3" (1..128 letters, digits, _, - and .), found "\"a b\""`)
	f(`in_list("crm"`, 14, `at 14: expected ) to close in_list(, found end of rule`)
	f(`in_list("crm") == 1`, 16, `at 16: expected and, or or the end of the rule (in_list("crm") is a condition, not a value to compare), found "=="`)
}

func TestParseDepth(t *testing.T) {
	deep := ""
	for range 100 {
		deep += "("
	}
	_, err := Compile(deep+"identified", DefaultConfig())
	var pe *Error
	if !errors.As(err, &pe) || pe.Pos != 65 {
		t.Fatalf("100 nested parentheses: got %v; want an *Error at 65", err)
	}
	long := make([]byte, maxRuleLen+1)
	for i := range long {
		long[i] = ' '
	}
	if _, err := Compile(string(long), DefaultConfig()); !errors.As(err, &pe) {
		t.Fatalf("a rule of %d bytes: got %v; want an *Error", len(long), err)
	}
}

func TestRefs(t *testing.T) {
	f := func(src string, want ...string) {
		t.Helper()
		r, err := Compile(src, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ref := range r.Refs() {
			got = append(got, ref.Name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Refs(%q) = %q; want %q", src, got, want)
		}
	}
	f(issueRules[0], `top(age)`, `interest(brand, "Nutrilon")`, `interest(brand, "Merries")`, `interest(brand, "Philips")`)
	f(issueRules[1], `since(cart)`, `since(purchase)`)
	f(`count(purchase) >= 2 and since(purchase) > 60d and since(purchase) <= 365d`, `count(purchase)`, `since(purchase)`)
	f(`rfm.r >= 4 and rfm.m >= 4 and not identified and lifecycle == "new"`, `rfm.r`, `rfm.m`, `identified`, `lifecycle`)
	f(`count(purchase, 180d) >= 2 and until_birthday <= 7d and trait("city") == "Oslo"`, `count(purchase, 180d)`, `until_birthday`, `trait("city")`)
	f(`in_list("crm") and (in_list("vip") or not in_list("crm"))`, `in_list("crm")`, `in_list("vip")`)
}

func TestRuleLists(t *testing.T) {
	r := mustCompile(t, `in_list("crm") and (in_list("vip") or not in_list("crm")) and identified`)
	if got, want := r.Lists(), []string{"crm", "vip"}; !slices.Equal(got, want) {
		t.Fatalf("Lists() = %q; want %q", got, want)
	}
	if got := mustCompile(t, `identified`).Lists(); got != nil {
		t.Fatalf("Lists() of a rule without in_list = %q; want none", got)
	}
}
