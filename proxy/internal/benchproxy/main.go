// Command benchproxy runs the proxy alone, for the benchmark harness
// (../shared/bench --extra / --extra-static), before and beside the full
// onebox binary:
//
//	benchproxy -listen 127.0.0.1:18090 -upstream unix:/path/backend.sock
//	benchproxy -listen 127.0.0.1:18093 -root ./static
//
// With -upstream every request is proxied (PROXY_TRY_FILES=@app); without
// it, the root is served as nginx's "try_files $uri $uri/ =404" would.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"onebox/config"
	"onebox/proxy"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "benchproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:18090", "HTTP listen address")
	upstream := flag.String("upstream", "", "http://host:port or unix:/path; empty serves -root only")
	root := flag.String("root", "", "static root")
	tryFiles := flag.String("try-files", "", "override PROXY_TRY_FILES (space-separated)")
	procs := flag.Int("gomaxprocs", 0, "GOMAXPROCS (0: Go's default)")
	accessLog := flag.String("access-log", "off", "combined, json or off (stdout)")
	gzipOn := flag.Bool("gzip", true, "PROXY_GZIP")
	buffering := flag.Bool("buffering", true, "PROXY_REQUEST_BUFFERING and PROXY_BUFFERING")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (profiling only)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }()
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	cfg := proxy.Config{
		Listen:               *listen,
		ClientMaxBodySize:    config.ByteSize(1 << 20),
		ClientBodyBufferSize: 16 << 10,
		BufferSize:           64 << 10,
		MaxTempFileSize:      1 << 30,
		TempDir:              "/tmp",
		ClientHeaderTimeout:  10 * time.Second,
		ClientSendTimeout:    60 * time.Second,
		KeepaliveTimeout:     75 * time.Second,
		ClientBodyTimeout:    60 * time.Second,
		ConnectTimeout:       5 * time.Second,
		ReadTimeout:          60 * time.Second,
		SendTimeout:          60 * time.Second,
		AccessLog:            *accessLog,
		Gzip:                 *gzipOn,
		Site: proxy.Site{
			Root:             *root,
			Index:            []string{"index.html", "index.htm"},
			TryFiles:         []string{"$uri", "$uri/", "=404"},
			Upstream:         *upstream,
			RequestBuffering: *buffering,
			Buffering:        *buffering,
		},
	}
	if *upstream != "" {
		cfg.Site.TryFiles = []string{"@app"}
	}
	if *tryFiles != "" {
		cfg.Site.TryFiles = strings.Fields(*tryFiles)
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("component", "proxy").Logger()
	s, err := proxy.New(cfg, proxy.Deps{Log: log, DrainTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return s.Run(ctx)
}
