//go:build integration

package integration

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"onebox/internal/testutil"
)

// What the guestbook's migration (the image's APP_PRESTART) prints.
const (
	migrationCreated = "guestbook: table messages created"
	migrationFound   = "guestbook: table messages already there"
)

// checkInitialMigrations: the first replicas start together and wait for
// the same database; APP_PRESTART runs in each, in turn under the MySQL
// named lock, so exactly one creates the table and the others find it.
func (st *swarmStack) checkInitialMigrations(t *testing.T) {
	cts := st.replicas(t)
	st.initial = ids(cts)
	var created, found, waited int
	for _, c := range cts {
		logs := st.logs(t, c.ID)
		created += strings.Count(logs, migrationCreated)
		found += strings.Count(logs, migrationFound)
		if strings.Contains(logs, "waiting for the lock") {
			waited++
		}
	}
	t.Logf("%d replicas: %d created the table, %d found it, %d waited for the prestart lock", len(cts), created, found, waited)
	if created != 1 || found != len(cts)-1 {
		t.Errorf("migrations: %d created the table and %d found it; want 1 and %d", created, found, len(cts)-1)
	}
}

// checkLaterMigrations: every replica started after the first ones (by the
// update, the scaling, the replacement) ran the migration and found the table.
func (st *swarmStack) checkLaterMigrations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all, err := st.dc.LabeledContainers(ctx, "com.docker.swarm.service.name="+st.service)
	if err != nil {
		t.Fatal(err)
	}
	later := 0
	for _, c := range all {
		if slices.Contains(st.initial, c.ID) {
			continue
		}
		later++
		logs := st.logs(t, c.ID)
		if strings.Contains(logs, migrationCreated) || !strings.Contains(logs, migrationFound) {
			t.Errorf("%s: created %v, found %v; want the table found", c.Name,
				strings.Contains(logs, migrationCreated), strings.Contains(logs, migrationFound))
		}
	}
	if later == 0 {
		t.Error("no replica started after the first ones")
	}
	t.Logf("%d later replicas found the table", later)
}

func (st *swarmStack) logs(t *testing.T, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := st.dc.Logs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testRollingUpdate: `docker service update --force` replaces every
// replica (start-first: the new one healthy before the old one stops; the
// old one fails readiness, leaves DNS, serves its lame-duck delay with
// Connection: close, then drains) under load, with no failed request.
func (st *swarmStack) testRollingUpdate(t *testing.T) {
	old := st.replicas(t)
	l := st.startLoad(t)
	start := time.Now()
	mustDocker(t, time.Minute, "service", "update", "--force", "--detach", st.service)
	st.waitUpdated(t)
	newer := st.waitReplicas(t, 3, ids(old), 3*time.Minute)
	t.Logf("3 replicas replaced in %s", time.Since(start).Round(100*time.Millisecond))
	l.waitAnswered(t, st.ips(t, newer))
	r := l.stop(t)
	st.noFailures(t, r)
}

// waitUpdated waits for the service's update to complete; a rollback (the
// stack's failure_action) fails the test.
func (st *swarmStack) waitUpdated(t *testing.T) {
	t.Helper()
	testutil.EventuallyWhy(t, 3*time.Minute, 500*time.Millisecond, "update completed", func() (bool, string) {
		state := mustDocker(t, time.Minute, "service", "inspect", "--format",
			"{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.Message}}{{end}}", st.service)
		if strings.HasPrefix(state, "rollback") {
			t.Fatalf("the update rolled back: %s", state)
		}
		return strings.HasPrefix(state, "completed"), state
	})
}

// testScale: 3 → 5 → 2 replicas under load, with no failed request; the new
// replicas take a share (the client closes its connections now and then, so
// it resolves the name again), the removed ones stop as on an update.
func (st *swarmStack) testScale(t *testing.T) {
	l := st.startLoad(t)
	mustDocker(t, time.Minute, "service", "scale", "--detach", st.service+"=5")
	five := st.waitReplicas(t, 5, nil, 3*time.Minute)
	l.waitAnswered(t, st.ips(t, five))
	mustDocker(t, time.Minute, "service", "scale", "--detach", st.service+"=2")
	st.waitReplicas(t, 2, nil, 2*time.Minute)
	l.waitMore(t, 300)
	r := l.stop(t)
	st.noFailures(t, r)
	// Back to the stack's 3 for what follows, without load.
	mustDocker(t, time.Minute, "service", "scale", "--detach", st.service+"=3")
	st.waitReplicas(t, 3, nil, 3*time.Minute)
}

// testKillReplica: one replica's container is killed (SIGKILL, no drain):
// only the requests in flight on its connections fail (at most one per
// client connection, all to its address), and the swarm replaces it.
func (st *swarmStack) testKillReplica(t *testing.T) {
	three := st.replicas(t)
	ips := st.ips(t, three)
	l := st.startLoad(t)
	l.waitAnswered(t, ips)
	victim, victimIP := three[0], ips[0]
	before, _ := l.progress(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.dc.Kill(ctx, victim.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st.waitReplicas(t, 3, []string{victim.ID}, 3*time.Minute)
	t.Logf("%s (%s) killed; replaced in %s", victim.Name, victimIP, time.Since(start).Round(100*time.Millisecond))
	l.waitMore(t, 300)
	r := l.stop(t)
	if before.Failed != 0 {
		t.Errorf("%d requests failed before the kill", before.Failed)
	}
	if r.Failed > loadWorkers {
		t.Errorf("%d requests failed; want at most %d (one in flight per connection)", r.Failed, loadWorkers)
	}
	for _, f := range r.Failures {
		t.Logf("failed: %s %s: %s", f.At.Format("15:04:05.000"), f.Remote, f.Error)
		if host, _, _ := net.SplitHostPort(f.Remote); host != victimIP {
			t.Errorf("a request to %q failed (%s: %s); only the killed replica's (%s) may", f.Remote, f.At.Format("15:04:05.000"), f.Error, victimIP)
		}
	}
	t.Logf("%d requests in flight on the killed replica failed", r.Failed)
}

func (st *swarmStack) noFailures(t *testing.T, r loadResult) {
	t.Helper()
	if r.Total == 0 {
		t.Fatal("no requests")
	}
	if r.Failed != 0 {
		for _, f := range r.Failures {
			t.Logf("failed: %s %s: %s", f.At.Format("15:04:05.000"), f.Remote, f.Error)
		}
		t.Errorf("%d of %d requests failed; want none", r.Failed, r.Total)
	}
}
