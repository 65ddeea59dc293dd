// Command hello is the trivial Go worker of the benchmarks: GET /hello
// answers the same 100-byte body as ../shared/bench's backend and Flask app,
// through appserver/worker (the pool's socket, or :$PORT when run alone).
package main

import (
	"fmt"
	"net/http"
	"os"

	"onebox/appserver/worker"
)

// Body is exactly 100 bytes, as the benchmark anchors answer.
var Body = []byte("Hello from the benchmark backend. This body is padded to exactly one hundred bytes: 0123456789abcde\n")

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(Body)
	})
	if err := worker.Serve(mux); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}
