package proxy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// errSpoolFull is a body past its spool's limit: 413 for a request (nginx's
// client_max_body_size); for a response, the rest is streamed.
var errSpoolFull = errors.New("body larger than the spool's limit")

// spooler hands out spools of one shape: the request side (memory up to
// PROXY_CLIENT_BODY_BUFFER_SIZE, limit PROXY_CLIENT_MAX_BODY_SIZE) or the
// response side (PROXY_BUFFER_SIZE, then PROXY_MAX_TEMP_FILE_SIZE on disk).
// Memory buffers are pooled, so a request holds at most mem bytes of
// memory for its body whatever its size.
type spooler struct {
	tf    *tempFiles
	mem   int   // memory buffer size
	limit int64 // most bytes a spool takes in all; 0 = no limit
	bufs  sync.Pool
	// files and bytes count bodies that went to a temp file, and the
	// bytes written there; nil counts nothing.
	files, bytes prometheus.Counter
}

func newSpooler(tf *tempFiles, mem int, limit int64, files, bytes prometheus.Counter) *spooler {
	sp := &spooler{tf: tf, mem: mem, limit: limit, files: files, bytes: bytes}
	sp.bufs.New = func() any { b := make([]byte, 0, mem); return &b }
	return sp
}

// get returns an empty spool; Close gives back what it holds.
func (sp *spooler) get() *spool { return sp.take(new(spool)) }

// take makes s an empty spool of sp and returns it: the request path
// keeps its spools in the pooled recorder, so buffering costs no
// allocation per request.
func (sp *spooler) take(s *spool) *spool {
	*s = spool{sp: sp}
	return s
}

// spool holds one body: the first mem bytes in a pooled buffer, the rest in
// a temp file. It is written once, then read back any number of times.
type spool struct {
	sp   *spooler
	buf  *[]byte
	f    *os.File
	n    int64 // bytes written in all
	disk int64 // bytes written to f
}

// Write appends p. It fails with errSpoolFull, writing nothing, when p
// would take the spool past its limit, and with a wrapped file error when
// the temp file cannot be made or written (a full disk).
func (s *spool) Write(p []byte) (int, error) {
	if lim := s.sp.limit; lim > 0 && s.n+int64(len(p)) > lim {
		return 0, errSpoolFull
	}
	written := 0
	if s.f == nil {
		if s.buf == nil {
			s.buf = s.sp.bufs.Get().(*[]byte)
		}
		b := *s.buf
		k := min(len(p), cap(b)-len(b))
		*s.buf = append(b, p[:k]...)
		written = k
		s.n += int64(k)
		if k == len(p) {
			return k, nil
		}
		f, err := s.sp.tf.create()
		if err != nil {
			return written, &tempFileError{err}
		}
		s.f = f
	}
	m, err := s.f.Write(p[written:])
	s.n += int64(m)
	s.disk += int64(m)
	if err != nil {
		return written + m, &tempFileError{fmt.Errorf("write temp file: %w", err)}
	}
	return written + m, nil
}

// ReadFrom fills the spool from r until EOF (nil), an error, or the limit:
// then it stops, having read nothing past it, and returns errSpoolFull, so
// that the caller may stream the rest of r. Reads go straight into the
// memory buffer while it has room.
func (s *spool) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	var bp *[]byte
	defer func() {
		if bp != nil {
			copyBufPool.Put(bp)
		}
	}()
	for {
		room := int64(-1) // bytes the limit still allows; -1 = no limit
		if lim := s.sp.limit; lim > 0 {
			if room = lim - s.n; room <= 0 {
				return total, errSpoolFull
			}
		}
		var n int
		var err error
		if b := s.memory(); s.f == nil && (s.buf == nil || len(b) < cap(b)) {
			if s.buf == nil {
				s.buf = s.sp.bufs.Get().(*[]byte)
				b = *s.buf
			}
			free := b[len(b):cap(b)]
			if room >= 0 && int64(len(free)) > room {
				free = free[:room]
			}
			n, err = r.Read(free)
			*s.buf = b[:len(b)+n]
			s.n += int64(n)
		} else {
			if bp == nil {
				bp = copyBufPool.Get().(*[]byte)
			}
			buf := *bp
			if room >= 0 && int64(len(buf)) > room {
				buf = buf[:room]
			}
			n, err = r.Read(buf)
			if n > 0 {
				if _, werr := s.Write(buf[:n]); werr != nil {
					return total, werr
				}
			}
		}
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Len is the number of bytes held.
func (s *spool) Len() int64 { return s.n }

// onDisk reports whether part of the body is in a temp file.
func (s *spool) onDisk() bool { return s.f != nil }

// memory is the part of the body held in memory.
func (s *spool) memory() []byte {
	if s.buf == nil {
		return nil
	}
	return *s.buf
}

// WriteTo writes the whole body to w, from its start: the memory part,
// then the file's. It may be called again (a retried request).
func (s *spool) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(s.memory())
	total := int64(n)
	if err != nil || s.f == nil {
		return total, err
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	m, err := io.CopyBuffer(onlyWriter{w}, fileReader{io.NewSectionReader(s.f, 0, s.disk)}, *bp)
	total += m
	if err == nil && m < s.disk {
		err = &tempFileError{io.ErrUnexpectedEOF}
	}
	return total, err
}

// onlyWriter hides a writer's ReadFrom, so that io.CopyBuffer uses the
// pooled buffer.
type onlyWriter struct{ io.Writer }

// fileReader marks the errors of reading a temp file back as
// tempFileErrors, apart from those of the writer it is copied to.
type fileReader struct{ r io.Reader }

func (f fileReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		err = &tempFileError{fmt.Errorf("read temp file: %w", err)}
	}
	return n, err
}

// Close drops the body: the temp file is closed (and with it freed, as it
// has no name) and the memory buffer goes back to the pool. The spool may
// not be used after.
func (s *spool) Close() error {
	var err error
	if s.f != nil {
		if s.sp.files != nil {
			s.sp.files.Inc()
			s.sp.bytes.Add(float64(s.disk))
		}
		err = s.f.Close()
		s.f = nil
	}
	if s.buf != nil {
		*s.buf = (*s.buf)[:0]
		s.sp.bufs.Put(s.buf)
		s.buf = nil
	}
	s.n, s.disk = 0, 0
	return err
}
