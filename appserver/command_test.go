package appserver

import (
	"reflect"
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
		MaxRequests: -1, MaxRequestsJitter: -1}
	var vars []string
	for _, p := range bad.Validate() {
		vars = append(vars, p.Var)
	}
	want := []string{"COMMAND", "PRESTART", "BIND", "WORKERS", "MAX_WORKERS", "TIMEOUT", "BOOT_TIMEOUT", "GRACEFUL_TIMEOUT", "PRESTART_TIMEOUT", "MAX_REQUESTS", "MAX_REQUESTS_JITTER"}
	if !reflect.DeepEqual(vars, want) {
		t.Errorf("problems for %v, want every one of %v", vars, want)
	}
}
