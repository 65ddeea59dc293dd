package worker

// The worker protocol, shared by the master (package appserver) and this
// package. A worker inherits the app socket as fd 3 (systemd socket
// activation: LISTEN_FDS=1, LISTEN_PID=its own pid, LISTEN_FDNAMES=app) and,
// optionally, the write end of a heartbeat pipe as fd 4.
//
// The heartbeat pipe carries text lines. A worker that speaks the protocol
// writes first, as soon as its process starts and before it loads the app:
//
//	hello [FLAG...]                         once, the first line
//
// The one flag so far is "sync" (HelloSync): the worker serves one request
// at a time, as gunicorn's sync worker, so a request in flight longer than
// APP_TIMEOUT (the AGE_MS its beat reports) is a hang, and the master kills
// it as it kills a silent one. Without it only silence is a hang, so a Go
// worker streaming a response for an hour is left alone.
//
// and then counts as booted only on "ready", which must come within
// APP_BOOT_TIMEOUT: a worker that exits or stays silent until then failed to
// boot. For a worker that never says hello, any line at all counts as a sign
// of life (so a worker in any language may simply write "\n" now and then),
// the first one boots it, and one that stays silent boots by living
// APP_BOOT_TIMEOUT. The Go side (Hello, Serve) writes:
//
//	ready                                   once, when it accepts on fd 3
//	beat SERVED INFLIGHT [AGE_MS METHOD URI] every interval; the oldest request in flight, if any
//	retire SERVED                           once, when it reached its max-requests limit
//
// After "retire" the worker keeps serving until the master, having started
// its replacement, sends SIGTERM.
//
// The master also passes the read end of a control pipe as fd 5
// (ONEBOX_CONTROL_FD=5), optional to use. Just before it sends SIGTERM it
// writes
//
//	drain MS                                stop now; the drain must end within MS milliseconds
//
// because the budget at stop time (what the supervisor's stop deadline left)
// can be shorter than ONEBOX_GRACEFUL_TIMEOUT, which was fixed at start.
const (
	EnvListenFDs       = "LISTEN_FDS"
	EnvListenPID       = "LISTEN_PID"
	EnvListenFDNames   = "LISTEN_FDNAMES"
	EnvWorkerID        = "ONEBOX_WORKER_ID"
	EnvHeartbeatFD     = "ONEBOX_HEARTBEAT_FD"
	EnvControlFD       = "ONEBOX_CONTROL_FD"
	EnvTimeout         = "ONEBOX_TIMEOUT"          // Go duration: heartbeat timeout the master applies
	EnvGracefulTimeout = "ONEBOX_GRACEFUL_TIMEOUT" // Go duration: drain budget on TERM/QUIT
	EnvMaxRequests     = "ONEBOX_MAX_REQUESTS"     // retire after this many requests; 0 = never
	EnvMaxJitter       = "ONEBOX_MAX_REQUESTS_JITTER"
	EnvWorkers         = "ONEBOX_WORKERS" // the pool's worker count when this worker was started
	EnvThreads         = "ONEBOX_THREADS" // APP_THREADS: threads per worker, for workers that take them
	EnvPort            = "PORT"           // the plain TCP port when run alone, without onebox

	// ListenFD is the first inherited socket (SD_LISTEN_FDS_START).
	ListenFD = 3
	// HeartbeatFD is the heartbeat pipe's write end.
	HeartbeatFD = 4
	// ControlFD is the control pipe's read end.
	ControlFD = 5

	MsgHello  = "hello"
	MsgReady  = "ready"
	MsgBeat   = "beat"
	MsgRetire = "retire"
	MsgDrain  = "drain"

	// HelloSync is the hello flag of a worker whose requests are bounded
	// by APP_TIMEOUT (one request at a time: its loop is the request).
	HelloSync = "sync"
)
