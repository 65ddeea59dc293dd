package appserver

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"gunicorn --bind fd://3 app:app", []string{"gunicorn", "--bind", "fd://3", "app:app"}, false},
		{"  a\t b\n c  ", []string{"a", "b", "c"}, false},
		{`python3 -c 'print("hi there")'`, []string{"python3", "-c", `print("hi there")`}, false},
		{`echo "a \"b\" \$HOME \n"`, []string{"echo", `a "b" $HOME \n`}, false},
		{`a\ b c`, []string{"a b", "c"}, false},
		{`x '' ""`, []string{"x", "", ""}, false},
		{`say 'it'"'"'s'`, []string{"say", "it's"}, false},
		{"$HOME *.go | wc", []string{"$HOME", "*.go", "|", "wc"}, false},
		{"", nil, true},
		{"   ", nil, true},
		{"a 'b", nil, true},
		{`a "b`, nil, true},
		{`a \`, nil, true},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("SplitCommand(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{Command: "app", Bind: "unix:/run/onebox/app.sock", MaxWorkers: 12, Timeout: 1, GracefulTimeout: 1, BootTimeout: 1}
	if ps := good.Validate(); len(ps) != 0 {
		t.Fatalf("valid config: %v", ps)
	}
	bad := Config{Command: "app 'x", Prestart: `m "`, PrestartTimeout: 0, Bind: "unix:rel.sock", Workers: -1, MaxWorkers: 0,
		MaxRequests: -1, MaxRequestsJitter: -1, WorkerConnections: -1}
	var vars []string
	for _, p := range bad.Validate() {
		vars = append(vars, p.Var)
	}
	want := []string{"COMMAND", "PRESTART", "BIND", "WORKERS", "MAX_WORKERS", "TIMEOUT", "BOOT_TIMEOUT", "GRACEFUL_TIMEOUT", "PRESTART_TIMEOUT", "MAX_REQUESTS", "WORKER_CONNECTIONS", "MAX_REQUESTS_JITTER"}
	if !reflect.DeepEqual(vars, want) {
		t.Errorf("problems for %v, want every one of %v", vars, want)
	}
}

// gunicorn with --bind as well as LISTEN_FDS takes fd 3 twice and its
// workers die at boot: the check warns and names the fix.
func TestGunicornBindWarning(t *testing.T) {
	for _, tc := range []struct {
		command, fix string
	}{
		{"gunicorn --bind fd://3 --workers 1 app:app", `"gunicorn --workers 1 app:app"`},
		{"gunicorn -b fd://3 app:app", `"gunicorn app:app"`},
		{"/usr/bin/gunicorn --bind=unix:/tmp/x.sock app:app", `"/usr/bin/gunicorn app:app"`},
		{"python3 -m gunicorn -bfd://3 -w 1 app:app", `"python3 -m gunicorn -w 1 app:app"`},
		{"gunicorn --workers 1 app:app", ""},
		{"uvicorn --fd 3 app:app", ""},
		{"myapp --bind fd://3", ""},
	} {
		t.Run(tc.command, func(t *testing.T) {
			ws := Config{Command: tc.command}.Warnings()
			if tc.fix == "" {
				if len(ws) != 0 {
					t.Fatalf("warnings %q, want none", ws)
				}
				return
			}
			if len(ws) != 1 || !strings.Contains(ws[0], "LISTEN_FDS") || !strings.Contains(ws[0], "APP_COMMAND="+tc.fix) {
				t.Fatalf("warnings %q, want one naming LISTEN_FDS and the fix APP_COMMAND=%s", ws, tc.fix)
			}
		})
	}
}
