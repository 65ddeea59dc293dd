package appserver

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

const (
	maxLine    = 16 << 10 // longer lines are cut, the rest of them dropped
	queueLines = 4096     // lines waiting for the logger, across all workers
)

// output logs worker stdout and stderr. Each stream has a reader goroutine
// that never waits for the log: lines go into a bounded queue, and when the
// logger falls behind (a slow log consumer, a flood of output) new lines are
// dropped and counted rather than blocking the worker's writes or the
// master.
type output struct {
	log     zerolog.Logger
	met     *metrics
	lines   chan line
	dropped atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

type line struct {
	worker, pid int
	stream      string
	text        []byte
}

func newOutput(log zerolog.Logger, met *metrics) *output {
	o := &output{log: log, met: met, lines: make(chan line, queueLines), stop: make(chan struct{}), done: make(chan struct{})}
	go o.run()
	return o
}

// read queues r's lines until EOF; t, if set, keeps the last ones.
func (o *output) read(w *proc, stream string, r io.ReadCloser, t *tail) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLine)
	skipping := false // inside the rest of an over-long line
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 && !skipping {
			text := trimEOL(b)
			if t != nil {
				t.add(string(text))
			}
			select {
			case o.lines <- line{w.id, w.pid, stream, append([]byte(nil), text...)}:
			default:
				o.dropped.Add(1)
			}
		}
		skipping = errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !skipping {
			return
		}
	}
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func (o *output) run() {
	defer close(o.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case l := <-o.lines:
			o.emit(l)
		case <-t.C:
			o.reportDrops()
		case <-o.stop:
			// Flush what is queued, then stop.
			for {
				select {
				case l := <-o.lines:
					o.emit(l)
				default:
					o.reportDrops()
					return
				}
			}
		}
	}
}

// emit logs one line; a line that is a JSON object is embedded as "json",
// not quoted into the message.
func (o *output) emit(l line) {
	ev := o.log.Info().Int("worker", l.worker).Int("pid", l.pid).Str("stream", l.stream)
	if len(l.text) > 0 && l.text[0] == '{' && json.Valid(l.text) {
		ev.RawJSON("json", l.text).Send()
		return
	}
	ev.Msg(string(l.text))
}

func (o *output) reportDrops() {
	if n := o.dropped.Swap(0); n > 0 {
		o.met.droppedLogs.Add(float64(n))
		o.log.Warn().Int64("lines", n).Msg("dropped worker output lines: logging could not keep up")
	}
}

// close flushes the queue within a second (a blocked log writer must not
// hold up the stop) and stops the logger.
func (o *output) close() {
	close(o.stop)
	select {
	case <-o.done:
	case <-time.After(time.Second):
	}
}

// tail keeps a worker's last stderr lines for the boot-failure report.
type tail struct {
	mu    sync.Mutex
	buf   []string
	next  int
	count int
}

func newTail(n int) *tail { return &tail{buf: make([]string, n)} }

func (t *tail) add(s string) {
	t.mu.Lock()
	t.buf[t.next] = s
	t.next = (t.next + 1) % len(t.buf)
	t.count++
	t.mu.Unlock()
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := min(t.count, len(t.buf))
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, t.buf[(t.next-n+i+len(t.buf))%len(t.buf)])
	}
	return out
}
