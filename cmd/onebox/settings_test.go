package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/config"
)

// base is a valid minimal environment: a static root that exists.
func base(t *testing.T, kv ...string) map[string]string {
	t.Helper()
	e := map[string]string{"PROXY_ROOT": t.TempDir()}
	for i := 0; i+1 < len(kv); i += 2 {
		e[kv[i]] = kv[i+1]
	}
	return e
}

func problemVars(ps config.Problems) []string {
	var vs []string
	for _, p := range ps {
		vs = append(vs, p.Var)
	}
	return vs
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	e := base(t,
		"ONEBOX_SHUTDOWN_TIMEOUT", "banana",
		"ONEBOX_LOG_LEVLE", "debug",
		"ONEBOX_LOG_FORMAT", "xml",
		"APP_WORKERS", "-1",
		"APP_BIND", "nowhere",
		"PROXY_CLIENT_MAX_BODY_SIZE", "huge",
		"MYSQL_HOST", "db",
		"MYSQL_TLS", "maybe",
		"PORT", "99999",
	)
	_, _, ps := load(e, true)
	got := strings.Join(problemVars(ps), " ")
	for _, want := range []string{
		"ONEBOX_SHUTDOWN_TIMEOUT", "ONEBOX_LOG_LEVLE", "ONEBOX_LOG_FORMAT", "APP_WORKERS", "APP_BIND",
		"PROXY_CLIENT_MAX_BODY_SIZE", "MYSQL_USER", "MYSQL_TLS", "PORT",
	} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("problems %v do not name %s", got, want)
		}
	}
	for _, p := range ps {
		if p.Var == "ONEBOX_LOG_LEVLE" && !strings.Contains(p.Error(), "did you mean ONEBOX_LOG_LEVEL?") {
			t.Errorf("unknown variable problem %q lacks the suggestion", p.Error())
		}
		if p.Var == "ONEBOX_SHUTDOWN_TIMEOUT" && !strings.Contains(p.Error(), `"banana"`) {
			t.Errorf("problem %q does not show the bad value", p.Error())
		}
	}
}

func TestUnknownVariables(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		want      string // "" = not reported
	}{
		{"typo in own prefix", "PROXY_ROOOT", "did you mean PROXY_ROOT?"},
		{"unknown in own prefix without a near name", "ONEBOX_FROBNICATE", "see onebox env"},
		{"typo in the app prefix", "APP_WORKRES", "did you mean APP_WORKERS?"},
		{"the app's own setting", "APP_ENV", ""},
		{"the mysql image's setting", "MYSQL_ROOT_PASSWORD", ""},
		{"the mysql image's setting", "MYSQL_ALLOW_EMPTY_PASSWORD", ""},
		{"secret file variant", "MYSQL_PASSWORD_FILE", ""},
		{"site not listed", "PROXY_SITE_SHOP_ROOT", "PROXY_SITES"},
		{"other prefix", "HOME", ""},
		{"the mysql client's setting", "MYSQL_HOME", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := base(t, tc.key, "x")
			if tc.key == "MYSQL_PASSWORD_FILE" {
				f := filepath.Join(t.TempDir(), "pw")
				os.WriteFile(f, []byte("pw\n"), 0o600)
				e[tc.key] = f
			}
			_, _, ps := load(e, true)
			var msg string
			for _, p := range ps {
				if p.Var == tc.key {
					msg = p.Error()
				}
			}
			if tc.want == "" && msg != "" {
				t.Fatalf("%s reported: %s", tc.key, msg)
			}
			if tc.want != "" && !strings.Contains(msg, tc.want) {
				t.Fatalf("%s: problem %q, want one containing %q", tc.key, msg, tc.want)
			}
			// At start-up (not strict) the same finding is a warning, not a problem.
			_, warnings, ps := load(e, false)
			if len(ps) != 0 {
				t.Fatalf("non-strict load: problems %v", ps)
			}
			if (tc.want != "") != (len(warnings) == 1) {
				t.Fatalf("non-strict load: warnings %q", warnings)
			}
		})
	}
}

func TestSecretsFilesAndMasking(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mysql := []string{"MYSQL_HOST", "db", "MYSQL_USER", "app"}

	s, _, ps := load(base(t, append(mysql, "MYSQL_PASSWORD_FILE", pw)...), true)
	if len(ps) > 0 || s.MySQL.Password.Reveal() != "hunter2" {
		t.Fatalf("_FILE: password %q, problems %v; want the trimmed file content", s.MySQL.Password.Reveal(), ps)
	}

	_, _, ps = load(base(t, append(mysql, "MYSQL_PASSWORD_FILE", pw, "MYSQL_PASSWORD", "hunter2")...), true)
	if len(ps) != 1 || ps[0].Var != "MYSQL_PASSWORD" || strings.Contains(ps[0].Error(), "hunter2") {
		t.Fatalf("both set: problems %v, want one naming MYSQL_PASSWORD with the value masked", ps)
	}

	_, _, ps = load(base(t, append(mysql, "MYSQL_PASSWORD_FILE", filepath.Join(dir, "missing"))...), true)
	if len(ps) != 1 || ps[0].Var != "MYSQL_PASSWORD_FILE" {
		t.Fatalf("missing file: problems %v, want one naming MYSQL_PASSWORD_FILE", ps)
	}

	var out, errOut bytes.Buffer
	e := base(t, append(mysql, "MYSQL_PASSWORD", "hunter2", "ONEBOX_ADMIN_TOKEN", "tok3n")...)
	if err := check(&out, &errOut, e); err != nil {
		t.Fatalf("check: %v\n%s", err, errOut.String())
	}
	all := out.String() + errOut.String()
	if strings.Contains(all, "hunter2") || strings.Contains(all, "tok3n") {
		t.Fatalf("check printed a secret:\n%s", all)
	}
	if !strings.Contains(out.String(), "MYSQL_PASSWORD=******\n") || !strings.Contains(out.String(), "MYSQL_HOST=db\n") {
		t.Fatalf("effective configuration lacks the masked password or the host:\n%s", out.String())
	}
}

func TestMisspeltSecretIsNeverPrinted(t *testing.T) {
	var out, errOut bytes.Buffer
	err := check(&out, &errOut, base(t, "MYSQL_PASSWROD", "hunter2", "ONEBOX_ADMIN_TOKNE", "tok3n"))
	if err == nil {
		t.Fatal("check passed with two misspelt variables")
	}
	all := out.String() + errOut.String()
	if strings.Contains(all, "hunter2") || strings.Contains(all, "tok3n") {
		t.Fatalf("a misspelt secret was printed:\n%s", all)
	}
	for _, want := range []string{"did you mean MYSQL_PASSWORD?", "did you mean ONEBOX_ADMIN_TOKEN?"} {
		if !strings.Contains(all, want) {
			t.Errorf("output lacks %q:\n%s", want, all)
		}
	}
}

func TestAliases(t *testing.T) {
	for _, tc := range []struct {
		name       string
		kv         []string
		workers    int
		listen     string
		problemVar string
	}{
		{"WEB_CONCURRENCY", []string{"WEB_CONCURRENCY", "5"}, 5, ":8080", ""},
		{"APP_WORKERS wins", []string{"WEB_CONCURRENCY", "5", "APP_WORKERS", "3"}, 3, ":8080", ""},
		{"PORT", []string{"PORT", "9000"}, 0, ":9000", ""},
		{"PORT keeps the host", []string{"PORT", "9000", "PROXY_LISTEN", "127.0.0.1:8080"}, 0, "127.0.0.1:9000", ""},
		{"bad PORT", []string{"PORT", "http"}, 0, ":8080", "PORT"},
		{"bad WEB_CONCURRENCY is named as written", []string{"WEB_CONCURRENCY", "-2"}, 0, ":8080", "WEB_CONCURRENCY (alias of APP_WORKERS)"},
		{"unparsable WEB_CONCURRENCY is named as written", []string{"WEB_CONCURRENCY", "abc"}, 0, ":8080", "WEB_CONCURRENCY (alias of APP_WORKERS)"},
		{"PORT with a listener it cannot split", []string{"PORT", "9000", "PROXY_LISTEN", "127.0.0.1"}, 0, "", "PROXY_LISTEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, ps := load(base(t, tc.kv...), true)
			if tc.problemVar != "" {
				if len(ps) != 1 || ps[0].Var != tc.problemVar {
					t.Fatalf("problems %v, want one naming %s", ps, tc.problemVar)
				}
				return
			}
			if len(ps) > 0 {
				t.Fatalf("problems: %v", ps)
			}
			if s.App.Workers != tc.workers || s.Proxy.Listen != tc.listen {
				t.Fatalf("workers %d listen %q, want %d %q", s.App.Workers, s.Proxy.Listen, tc.workers, tc.listen)
			}
		})
	}
}

func TestNamedSites(t *testing.T) {
	docs := t.TempDir()
	s, _, ps := load(base(t,
		"PROXY_SITES", "docs",
		"PROXY_SITE_DOCS_ROOT", docs,
		"PROXY_SITE_DOCS_SERVER_NAMES", "docs.example.com *.docs.example.com",
	), true)
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	if len(s.Proxy.Sites) != 1 {
		t.Fatalf("sites %+v, want one", s.Proxy.Sites)
	}
	site := s.Proxy.Sites[0]
	if site.Name != "docs" || site.Root != docs || len(site.ServerNames) != 2 || site.TryFiles[0] != "$uri" {
		t.Fatalf("site %+v: want name docs, its root, two names and default try_files", site)
	}
	_, _, ps = load(base(t, "PROXY_SITES", "docs,docs"), true)
	if len(ps) == 0 || ps[0].Var != "PROXY_SITES" {
		t.Fatalf("duplicate site names: problems %v, want PROXY_SITES", ps)
	}
	_, _, ps = load(base(t, "PROXY_SITES", "docs,my_shop"), true)
	if len(ps) != 1 || ps[0].Var != "PROXY_SITES" || ps[0].Value != "my_shop" {
		t.Fatalf("site name with an underscore: problems %v, want one, PROXY_SITES=my_shop", ps)
	}
}

func TestCheckCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	e := base(t, "ONEBOX_SHUTDOWN_TIMEOUT", "banana", "ONEBOX_LOG_LEVLE", "debug")
	err := run(context.Background(), []string{"check"}, &out, &errOut, e)
	if code := exitCode(err, &errOut); code != 1 {
		t.Fatalf("check exit code %d, want 1", code)
	}
	for _, want := range []string{"ONEBOX_SHUTDOWN_TIMEOUT=\"banana\"", "ONEBOX_LOG_LEVLE", "did you mean ONEBOX_LOG_LEVEL?", "2 problem(s)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut.String())
		}
	}

	out.Reset()
	errOut.Reset()
	if err := run(context.Background(), []string{"check"}, &out, &errOut, base(t)); err != nil {
		t.Fatalf("valid environment: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"PROXY_LISTEN=:8080\n", "ONEBOX_SHUTDOWN_TIMEOUT=9s\n", "PROXY_CLIENT_MAX_BODY_SIZE=1m\n", "PROXY_INDEX=index.html index.htm\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective configuration lacks %q", want)
		}
	}
}

// onebox check says where bodies past their memory buffer go: files in a
// writable PROXY_TEMP_DIR; with an unusable one (a read-only root) a warning
// naming it and anonymous memory, and still exit 0.
func TestCheckSaysWhereBodiesGo(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	if err := run(context.Background(), []string{"check"}, &out, &errOut, base(t, "PROXY_TEMP_DIR", dir)); err != nil {
		t.Fatalf("check: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(errOut.String(), "bodies past their memory buffer go to files (") || !strings.Contains(errOut.String(), ") in "+dir+"\n") ||
		strings.Contains(errOut.String(), "warning") {
		t.Errorf("writable PROXY_TEMP_DIR: check said\n%s", errOut.String())
	}
	errOut.Reset()
	missing := filepath.Join(dir, "missing")
	if err := run(context.Background(), []string{"check"}, &out, &errOut, base(t, "PROXY_TEMP_DIR", missing)); err != nil {
		t.Fatalf("check with an unusable PROXY_TEMP_DIR: %v, want exit 0 with a warning\n%s", err, errOut.String())
	}
	for _, want := range []string{"onebox: warning: PROXY_TEMP_DIR=\"" + missing + "\" is not usable", "bodies past their memory buffer go to anonymous memory (memfd)\n"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("unusable PROXY_TEMP_DIR: check output lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "Usage:"},
		{[]string{"status", "--help"}, 0, "Usage:"},
		{[]string{"version"}, 0, "onebox "},
		{[]string{"--version"}, 0, "onebox "},
		{[]string{"frobnicate"}, 2, ""},
		{[]string{"env", "extra"}, 2, ""},
		{[]string{"scale"}, 2, ""},
		{[]string{"scale", "lots"}, 2, ""},
		{[]string{"status", "--yaml"}, 2, ""},
		{[]string{"env"}, 0, "| `PROXY_ROOT` |"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errOut, map[string]string{})
		if code := exitCode(err, &errOut); code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("onebox %v: exit %d, output %.60q; want %d and %q", tc.args, code, out.String(), tc.code, tc.out)
		}
	}
}

func TestClientsWithoutServer(t *testing.T) {
	// Nothing listens on this port: health must fail plainly and fast.
	e := map[string]string{"ONEBOX_ADMIN_LISTEN": "127.0.0.1:1"}
	for _, args := range [][]string{{"health"}, {"status"}, {"reload"}, {"scale", "+1"}} {
		var out, errOut bytes.Buffer
		start := time.Now()
		err := run(context.Background(), args, &out, &errOut, e)
		if code := exitCode(err, &errOut); code != exitNoServer {
			t.Errorf("onebox %v without a server: exit %d, want %d", args, code, exitNoServer)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("onebox %v took %s to fail", args, time.Since(start))
		}
	}
}

func TestReferenceIsFresh(t *testing.T) {
	var b bytes.Buffer
	writeReference(&b)
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "environment.md"))
	if err != nil {
		t.Fatalf("read docs/environment.md: %v (make docs writes it)", err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatal("docs/environment.md is stale: run `make docs`")
	}
	for _, v := range []string{"ONEBOX_SHUTDOWN_TIMEOUT", "PROXY_TRY_FILES", "APP_WORKERS", "MYSQL_PASSWORD", "WEB_CONCURRENCY", "PROXY_SITE_<NAME>_ROOT"} {
		if !strings.Contains(b.String(), v) {
			t.Errorf("reference lacks %s", v)
		}
	}
}

func TestLevenshtein(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"LEVLE", "LEVEL", 1}, {"ROOOT", "ROOT", 1}, {"", "ab", 2}, {"abc", "abc", 0}, {"kitten", "sitting", 3}} {
		if got := levenshtein(tc.a, tc.b); got != tc.d {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// A stop longer than docker's default grace period is a warning: docker
// would SIGKILL the box in the middle of its drain.
func TestStopGraceWarning(t *testing.T) {
	for _, tc := range []struct {
		delay, timeout string
		warn           bool
		problem        string
	}{
		{"", "", false, ""},
		{"1s", "9s", false, ""},
		{"5s", "", true, ""},
		{"", "15s", true, ""},
		{"-1s", "", false, "ONEBOX_SHUTDOWN_DELAY"},
		{"soon", "", false, "ONEBOX_SHUTDOWN_DELAY"},
	} {
		t.Run(tc.delay+"+"+tc.timeout, func(t *testing.T) {
			e := base(t)
			if tc.delay != "" {
				e["ONEBOX_SHUTDOWN_DELAY"] = tc.delay
			}
			if tc.timeout != "" {
				e["ONEBOX_SHUTDOWN_TIMEOUT"] = tc.timeout
			}
			_, warnings, ps := load(e, true)
			if got := strings.Join(problemVars(ps), ","); got != tc.problem {
				t.Fatalf("problems %v, want %q", ps, tc.problem)
			}
			var warned string
			for _, w := range warnings {
				if strings.Contains(w, "stop's default grace period") {
					warned = w
				}
			}
			if (warned != "") != tc.warn {
				t.Fatalf("warnings %q, want a grace-period warning: %v", warnings, tc.warn)
			}
			if tc.warn && !strings.Contains(warned, "ONEBOX_SHUTDOWN_DELAY") {
				t.Errorf("warning %q does not name ONEBOX_SHUTDOWN_DELAY", warned)
			}
		})
	}
}
