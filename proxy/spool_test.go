package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestTempFilesNamelessAndPrivate(t *testing.T) {
	dir := t.TempDir()
	tf, note := probeTempFiles(dir)
	if note != "" {
		t.Fatalf("probe of a writable directory: note %q, want none", note)
	}
	if tf.kind != tempOTmpfile && tf.kind != tempUnlinked {
		t.Fatalf("kind = %v, want a file in the directory", tf.kind)
	}
	for _, kind := range []tempKind{tempOTmpfile, tempUnlinked, tempMemfd} {
		t.Run(kind.String(), func(t *testing.T) {
			tf := &tempFiles{dir: dir, kind: kind}
			f, err := tf.create()
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			defer f.Close()
			if _, err := f.WriteString("body"); err != nil {
				t.Fatalf("write: %v", err)
			}
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if kind != tempMemfd && fi.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("directory holds %v while the file is open, want nothing (nameless file)", left)
			}
		})
	}
}

func TestTempFilesUnusableDirectory(t *testing.T) {
	// A file where the directory should be, and a missing directory:
	// what a read-only root with no writable mount comes down to.
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(t.TempDir(), "missing")} {
		tf, note := probeTempFiles(dir)
		if tf.kind != tempMemfd {
			t.Errorf("%s: kind = %v, want memfd", dir, tf.kind)
		}
		if !strings.Contains(note, "PROXY_TEMP_DIR=\""+dir+"\"") || !strings.Contains(note, "memfd") {
			t.Errorf("%s: note %q, want it to name PROXY_TEMP_DIR and say memfd", dir, note)
		}
		where, note2 := TempStorage(dir)
		if where != "anonymous memory (memfd)" || note2 != note {
			t.Errorf("TempStorage(%s) = %q, %q", dir, where, note2)
		}
		f, err := tf.create()
		if err != nil {
			t.Fatalf("create on memfd: %v", err)
		}
		f.Close()
	}
	tf := &tempFiles{dir: file, kind: tempNone}
	if _, err := tf.create(); !errors.Is(err, errNoTempStorage) {
		t.Errorf("create with no storage: %v, want errNoTempStorage", err)
	}
}

func newTestSpooler(t *testing.T, mem int, limit int64) (*spooler, string, prometheus.Counter, prometheus.Counter) {
	t.Helper()
	dir := t.TempDir()
	tf, _ := probeTempFiles(dir)
	files := prometheus.NewCounter(prometheus.CounterOpts{Name: "f"})
	bytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "b"})
	return newSpooler(tf, mem, limit, files, bytes), dir, files, bytes
}

func TestSpoolMemoryThenFile(t *testing.T) {
	sp, dir, files, nbytes := newTestSpooler(t, 1024, 0)
	for _, size := range []int{0, 1, 1024, 1025, 300 << 10} {
		body := make([]byte, size)
		_, _ = rand.Read(body)
		s := sp.get()
		// Odd-sized reads, so writes straddle the memory buffer's end.
		n, err := s.ReadFrom(io.LimitReader(bytes.NewReader(body), int64(size)))
		if err != nil || n != int64(size) || s.Len() != int64(size) {
			t.Fatalf("size %d: ReadFrom = %d, %v; Len %d", size, n, err, s.Len())
		}
		if want := size > 1024; s.onDisk() != want {
			t.Errorf("size %d: onDisk = %v, want %v", size, s.onDisk(), want)
		}
		for range 2 { // read back twice: a retried request sends it again
			var got bytes.Buffer
			if m, err := s.WriteTo(&got); err != nil || m != int64(size) || !bytes.Equal(got.Bytes(), body) {
				t.Fatalf("size %d: WriteTo = %d, %v; same bytes %v", size, m, err, bytes.Equal(got.Bytes(), body))
			}
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("temp directory holds %v, want nothing", left)
	}
	if got := counterValue(t, files); got != 2 {
		t.Errorf("files counted %v, want 2", got)
	}
	if got, want := counterValue(t, nbytes), float64(1+(300<<10)-1024); got != want {
		t.Errorf("bytes counted %v, want %v", got, want)
	}
}

func TestSpoolLimit(t *testing.T) {
	sp, _, _, _ := newTestSpooler(t, 16, 100)
	s := sp.get()
	defer s.Close()
	r := bytes.NewReader(make([]byte, 100))
	if _, err := s.ReadFrom(r); !errors.Is(err, errSpoolFull) || s.Len() != 100 || r.Len() != 0 {
		t.Fatalf("exactly the limit: %v, Len %d, %d unread; want errSpoolFull, 100, 0", err, s.Len(), r.Len())
	}
	if n, err := s.Write([]byte{1}); n != 0 || !errors.Is(err, errSpoolFull) {
		t.Errorf("one past the limit: %d, %v; want 0, errSpoolFull", n, err)
	}
	s2 := sp.get()
	defer s2.Close()
	r2 := bytes.NewReader(make([]byte, 1000))
	if _, err := s2.ReadFrom(r2); !errors.Is(err, errSpoolFull) || r2.Len() != 900 {
		t.Errorf("a larger body: %v with %d unread, want errSpoolFull with 900: nothing past the limit is read", err, r2.Len())
	}
}

func TestSpoolNoStorage(t *testing.T) {
	sp := newSpooler(&tempFiles{kind: tempNone}, 8, 0, nil, nil)
	s := sp.get()
	defer s.Close()
	if _, err := s.Write(make([]byte, 8)); err != nil {
		t.Fatalf("within memory: %v", err)
	}
	if _, err := s.Write([]byte{1}); !errors.Is(err, errNoTempStorage) {
		t.Errorf("past memory with no storage: %v, want errNoTempStorage", err)
	}
}

// counterValue reads a counter through a registry, as /metrics would.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gather: %v, %d families", err, len(mfs))
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}
