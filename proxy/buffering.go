package proxy

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"onebox/proxy/internal/h1"
)

// Buffering is why onebox can sit in front of sync workers (gunicorn's
// default, any single-threaded Python, Ruby or PHP worker), which serve one
// connection at a time: a client that uploads or downloads slowly would
// hold a whole worker (issue 11). As nginx does by default, a request body
// is read whole before an upstream connection is taken
// (proxy_request_buffering), and a response is read as fast as the
// upstream sends it, the connection given back at its end, while the
// client reads at its own pace (proxy_buffering). Both spill from memory
// into nameless temp files (tempfile.go, spool.go).

// newSpoolers probes PROXY_TEMP_DIR, says at start-up where bodies past
// their memory buffer go when it is not the directory, and makes the
// request and response spoolers.
func (s *Server) newSpoolers() {
	tf, note := probeTempFiles(s.cfg.TempDir)
	if note != "" {
		s.log.Warn().Str("temp_dir", s.cfg.TempDir).Str("bodies_to", tf.kind.String()).Msg(note)
	}
	reqFiles, reqBytes := s.metrics.tempFiles("request")
	respFiles, respBytes := s.metrics.tempFiles("response")
	s.reqSpool = newSpooler(tf, int(s.cfg.ClientBodyBufferSize), s.maxBody, reqFiles, reqBytes)
	s.respSpool = newSpooler(tf, int(s.cfg.BufferSize), int64(s.cfg.BufferSize+s.cfg.MaxTempFileSize), respFiles, respBytes)
}

// tempFileError is a temp file that could not be made or written (a full
// disk, an unwritable PROXY_TEMP_DIR): 500 for a request, 502 for a
// response, with a log line naming the cause.
type tempFileError struct{ err error }

func (e *tempFileError) Error() string { return e.err.Error() }
func (e *tempFileError) Unwrap() error { return e.err }

// bufferRequest reads the whole request body into a spool. On failure it
// has answered the client (413, 408, 400, 500) or marked it gone, and
// returns nil.
func (s *Server) bufferRequest(w *recorder, r *http.Request, st *site) *spool {
	sp := s.reqSpool.take(&w.reqBody)
	br := &bodyReader{r: r.Body, rc: http.NewResponseController(w), timeout: s.cfg.ClientBodyTimeout}
	_, err := sp.ReadFrom(br)
	if errors.Is(err, errSpoolFull) {
		// Exactly PROXY_CLIENT_MAX_BODY_SIZE bytes so far: over only if
		// more follows.
		var one [1]byte
		n, rerr := io.ReadFull(br, one[:])
		switch {
		case n == 0 && rerr == io.EOF:
			err = nil
		case rerr != nil && n == 0:
			err = rerr
		}
	}
	if err == nil {
		if sp.onDisk() {
			s.log.Debug().Str("uri", r.RequestURI).Int64("bytes", sp.Len()).Msg("request body buffered to a temp file")
		}
		return sp
	}
	sp.Close()
	var re *h1.RequestError
	var te *tempFileError
	closeAfter(w, r)
	switch {
	case errors.Is(err, errSpoolFull):
		writeStatusPage(w, r, http.StatusRequestEntityTooLarge)
	case errors.As(err, &re):
		writeStatusPage(w, r, re.Status)
	case errors.As(err, &te):
		s.log.Error().Err(err).Str("site", st.name).Str("uri", r.RequestURI).Str("temp_dir", s.cfg.TempDir).Msg("cannot buffer the request body: answered 500")
		writeStatusPage(w, r, http.StatusInternalServerError)
	case h1.IsTimeout(err):
		// nginx's client_body_timeout: 408, and the connection closed.
		writeStatusPage(w, r, http.StatusRequestTimeout)
	default:
		// The client went away mid-body (nginx logs 400 for it; we log
		// 499 as for any departed client) and nothing reached the app.
		w.status = 499
		w.abort = true
	}
	return nil
}

// responseBuffered reports whether a response is read whole before the
// client gets it, and drops X-Accel-Buffering (nginx's header, which the
// client never sees). Not buffered: bodiless responses, server-sent events
// and X-Accel-Buffering: no, which must reach the client as they come.
func (s *Server) responseBuffered(st *site, h http.Header, resp *h1.Response) bool {
	xab, hasXAB := h["X-Accel-Buffering"]
	if hasXAB {
		delete(h, "X-Accel-Buffering")
	}
	if !st.buffering || resp.ContentLength == 0 || hasXAB && len(xab) > 0 && strings.EqualFold(strings.TrimSpace(xab[0]), "no") {
		return false
	}
	ct := resp.ContentType
	return !(len(ct) >= 17 && strings.EqualFold(ct[:17], "text/event-stream"))
}

// bufferResponse reads the upstream's body into a spool, up to
// PROXY_BUFFER_SIZE in memory and PROXY_MAX_TEMP_FILE_SIZE in a temp file.
// done reports that the body was read to its end (the connection may then
// be released); otherwise the rest is to be streamed from body. On failure
// it has answered the client (502, 504) and closed c, and returns nil.
func (s *Server) bufferResponse(w *recorder, r *http.Request, st *site, c *h1.UpConn, body io.Reader) (sp *spool, done bool) {
	sp = s.respSpool.take(&w.respBody)
	_, err := sp.ReadFrom(body)
	if err == nil {
		return sp, true
	}
	if errors.Is(err, errSpoolFull) {
		return sp, false // past the temp-file limit: stream the rest
	}
	sp.Close()
	c.Close()
	for k := range w.Header() {
		if k != "Server" && k != "Connection" {
			delete(w.Header(), k)
		}
	}
	var te *tempFileError
	if errors.As(err, &te) {
		s.log.Error().Err(err).Str("site", st.name).Str("uri", r.RequestURI).Str("temp_dir", s.cfg.TempDir).Msg("cannot buffer the response body: answered 502")
		writeStatusPage(w, r, http.StatusBadGateway)
		return nil, false
	}
	s.upstreamFailed(w, r, st, err, false)
	return nil, false
}

// writeSpool sends a buffered body to the client; false means the client
// could not take it.
func writeSpool(w *recorder, sp *spool, zw *gzip.Writer) bool {
	var dst io.Writer = w
	if zw != nil {
		dst = zw
	}
	_, err := sp.WriteTo(dst)
	return err == nil
}

// setLength gives a response buffered whole from a chunked upstream its
// length, as nginx does, unless trailers must follow it.
func setLength(h http.Header, resp *h1.Response, n int64, trailers bool) {
	if resp.ContentLength >= 0 || trailers {
		return
	}
	resp.ContentLength = n
	h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
}
