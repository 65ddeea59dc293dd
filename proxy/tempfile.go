package proxy

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// tempFiles makes the files that request and response bodies spill into
// past their memory buffer (nginx's client_body_temp_path and
// proxy_temp_path). A file never has a name (O_TMPFILE) or loses it as
// soon as it is made, so nothing is left behind on any path: the kernel
// frees the space when the last descriptor closes, even after a crash.
type tempFiles struct {
	dir  string
	kind tempKind
}

// tempKind is how tempFiles makes a file, decided once at start-up by
// probing the directory.
type tempKind int

const (
	// tempNone: no directory is writable and memfd_create is missing;
	// a body past its memory buffer cannot be kept.
	tempNone tempKind = iota
	// tempOTmpfile: open(dir, O_TMPFILE), a file that never has a name.
	tempOTmpfile
	// tempUnlinked: a named file made with mode 0600 and unlinked at
	// once, for file systems without O_TMPFILE.
	tempUnlinked
	// tempMemfd: memfd_create, anonymous memory that the kernel may swap
	// out, for a read-only root with no writable directory.
	tempMemfd
)

func (k tempKind) String() string {
	switch k {
	case tempOTmpfile:
		return "files (O_TMPFILE)"
	case tempUnlinked:
		return "files (unlinked at once)"
	case tempMemfd:
		return "anonymous memory (memfd)"
	}
	return "nowhere"
}

// oTmpfile is Linux's O_TMPFILE (__O_TMPFILE|O_DIRECTORY); the syscall
// package does not name it.
const oTmpfile = 0x400000 | syscall.O_DIRECTORY

// errNoTempStorage is a body past its memory buffer when there is nowhere
// to keep it.
var errNoTempStorage = errors.New("no writable temp directory and no memfd: body larger than its memory buffer")

// probeTempFiles decides how temp files are made under dir. note, when
// not empty, says in one sentence what is missing and where bodies will
// go instead; it is logged at start-up and printed by `onebox check`.
func probeTempFiles(dir string) (tf *tempFiles, note string) {
	tf = &tempFiles{dir: dir}
	f, err := openTmpfile(dir)
	if err == nil {
		f.Close()
		tf.kind = tempOTmpfile
		return tf, ""
	}
	dirErr := err
	if f, err = createUnlinked(dir); err == nil {
		f.Close()
		tf.kind = tempUnlinked
		return tf, ""
	}
	if !errors.Is(dirErr, syscall.EOPNOTSUPP) && !errors.Is(dirErr, syscall.EISDIR) && !errors.Is(dirErr, syscall.EINVAL) {
		err = dirErr // the directory itself is the problem, not O_TMPFILE
	}
	if f, merr := memfd(); merr == nil {
		f.Close()
		tf.kind = tempMemfd
		return tf, fmt.Sprintf("PROXY_TEMP_DIR=%q is not usable (%v): bodies past their memory buffer go to anonymous memory (memfd), which counts against the container's memory limit; mount a writable directory there (a volume or tmpfs) to keep them on disk", dir, unwrapPath(err))
	}
	return tf, fmt.Sprintf("PROXY_TEMP_DIR=%q is not usable (%v) and memfd_create is missing: a request body past PROXY_CLIENT_BODY_BUFFER_SIZE gets 500 and a response past PROXY_BUFFER_SIZE is streamed", dir, unwrapPath(err))
}

// unwrapPath drops the operation and path from an *os.PathError: the note
// names the directory already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// TempStorage says where bodies past their memory buffer go with dir as
// PROXY_TEMP_DIR, and, when dir cannot be used, what is missing (empty
// when all is well). `onebox check` prints it.
func TempStorage(dir string) (where, note string) {
	tf, note := probeTempFiles(dir)
	where = tf.kind.String()
	if tf.kind == tempOTmpfile || tf.kind == tempUnlinked {
		where += " in " + dir
	}
	return where, note
}

// create makes one temp file, nameless, mode 0600.
func (t *tempFiles) create() (*os.File, error) {
	var f *os.File
	var err error
	switch t.kind {
	case tempOTmpfile:
		f, err = openTmpfile(t.dir)
	case tempUnlinked:
		f, err = createUnlinked(t.dir)
	case tempMemfd:
		f, err = memfd()
	default:
		err = errNoTempStorage
	}
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	return f, nil
}

func openTmpfile(dir string) (*os.File, error) {
	fd, err := syscall.Open(dir, oTmpfile|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir+"/(O_TMPFILE)"), nil
}

func createUnlinked(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".onebox-body-*") // mode 0600
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// memfd makes an anonymous file in memory (memfd_create(2), MFD_CLOEXEC).
func memfd() (*os.File, error) {
	if sysMemfdCreate < 0 {
		return nil, &os.SyscallError{Syscall: "memfd_create", Err: syscall.ENOSYS}
	}
	name, _ := syscall.BytePtrFromString("onebox-body")
	const mfdCloexec = 1
	fd, _, errno := syscall.Syscall(uintptr(sysMemfdCreate), uintptr(unsafe.Pointer(name)), mfdCloexec, 0)
	if errno != 0 {
		return nil, &os.SyscallError{Syscall: "memfd_create", Err: errno}
	}
	return os.NewFile(fd, "memfd:onebox-body"), nil
}
