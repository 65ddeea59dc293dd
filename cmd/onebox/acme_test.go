package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// onebox check names every ACME domain that no site answers, beside the
// other ACME mistakes, and accepts a configuration where sites answer all.
func TestCheckNamesACMEDomainsNoSiteAnswers(t *testing.T) {
	var out, errOut bytes.Buffer
	e := base(t,
		"PROXY_SERVER_NAMES", "www.example.com",
		"PROXY_SITES", "shop",
		"PROXY_SITE_SHOP_ROOT", t.TempDir(),
		"PROXY_SITE_SHOP_SERVER_NAMES", "*.shop.example.com",
		"PROXY_ACME_DOMAINS", "www.example.com eu.shop.example.com blog.example.com *.example.com",
		"PROXY_ACME_DIR", t.TempDir(),
		"PROXY_ACME_EMAIL", "nobody",
	)
	err := run(context.Background(), []string{"check"}, &out, &errOut, e)
	if code := exitCode(err, &errOut); code != 1 {
		t.Fatalf("check exit code %d, want 1\n%s", code, errOut.String())
	}
	for _, want := range []string{
		`PROXY_ACME_DOMAINS="blog.example.com": a name some site answers`,
		`PROXY_ACME_DOMAINS="*.example.com"`,
		`PROXY_ACME_EMAIL="nobody"`,
		"3 problem(s)",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut.String())
		}
	}

	out.Reset()
	errOut.Reset()
	e["PROXY_ACME_DOMAINS"] = "www.example.com eu.shop.example.com"
	e["PROXY_ACME_EMAIL"] = "ops@example.com"
	if err := run(context.Background(), []string{"check"}, &out, &errOut, e); err != nil {
		t.Fatalf("valid ACME environment: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "PROXY_ACME_DOMAINS=www.example.com eu.shop.example.com\n") {
		t.Errorf("effective configuration lacks the ACME domains:\n%s", out.String())
	}
}
