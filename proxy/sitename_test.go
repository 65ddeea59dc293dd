package proxy

import (
	"strings"
	"testing"
)

// TestSiteNames: the rule for the names in PROXY_SITES, which become part
// of PROXY_SITE_<NAME>_* variable names. Problems name PROXY_SITES (SITES
// relative to the PROXY_ prefix) and quote the offending entry.
func TestSiteNames(t *testing.T) {
	tests := []struct {
		names []string
		bad   []string // the entries reported, in order
		want  string   // part of the message, when bad
	}{
		{[]string{"docs"}, nil, ""},
		{[]string{"docs", "shop2", "Blog"}, nil, ""},
		{[]string{" docs ", "v2"}, nil, ""},
		{[]string{"my_shop"}, []string{"my_shop"}, "letters and digits only"},
		{[]string{"my-shop"}, []string{"my-shop"}, "letters and digits only"},
		{[]string{"docs", ""}, []string{""}, "letters and digits only"},
		{[]string{"shop.example"}, []string{"shop.example"}, "letters and digits only"},
		{[]string{"ünï"}, []string{"ünï"}, "letters and digits only"},
		{[]string{"docs", "Docs"}, []string{"Docs"}, "each site name once"},
		{[]string{"a_b", "docs", "docs"}, []string{"a_b", "docs"}, "site name"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			c := Config{SiteNames: tt.names}
			var ps []string
			for _, p := range c.validateSites() {
				if p.Var != "SITES" {
					continue // the empty default site's own problems
				}
				ps = append(ps, p.Value)
				if !strings.Contains(p.Want, tt.want) {
					t.Errorf("problem %+v, want a message with %q", p, tt.want)
				}
			}
			if strings.Join(ps, "|") != strings.Join(tt.bad, "|") || len(ps) != len(tt.bad) {
				t.Fatalf("SITES problems for %q, want %q", ps, tt.bad)
			}
		})
	}
}

func TestValidSiteName(t *testing.T) {
	for name, want := range map[string]bool{
		"docs": true, "Shop2": true, " v2 ": true, "7": true,
		"": false, " ": false, "my_shop": false, "my-shop": false, "a.b": false, "ünï": false,
	} {
		if got := ValidSiteName(name); got != want {
			t.Errorf("ValidSiteName(%q) = %v, want %v", name, got, want)
		}
	}
}
