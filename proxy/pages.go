package proxy

import (
	"net/http"
	"strconv"
)

// Status pages are small and fixed, like nginx's, and name no version.
var statusPages = func() map[int][]byte {
	m := map[int][]byte{}
	for _, c := range []int{301, 308, 400, 403, 404, 405, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 505} {
		t := strconv.Itoa(c) + " " + http.StatusText(c)
		m[c] = []byte("<html>\r\n<head><title>" + t + "</title></head>\r\n<body>\r\n<center><h1>" + t +
			"</h1></center>\r\n<hr><center>onebox</center>\r\n</body>\r\n</html>\r\n")
	}
	return m
}()

var (
	hdrHTML  = []string{"text/html; charset=utf-8"}
	hdrClose = []string{"close"}
)

// writeStatusPage answers with code and its small HTML page.
func writeStatusPage(w http.ResponseWriter, r *http.Request, code int) {
	page, ok := statusPages[code]
	if !ok {
		t := strconv.Itoa(code) + " " + http.StatusText(code)
		page = []byte("<html><head><title>" + t + "</title></head><body><center><h1>" + t + "</h1></center></body></html>\r\n")
	}
	h := w.Header()
	h["Content-Type"] = hdrHTML
	h["Content-Length"] = []string{strconv.Itoa(len(page))}
	delete(h, "Etag")
	delete(h, "Last-Modified")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(page)
	}
}
