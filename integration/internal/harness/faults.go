package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
)

// Kill ends the verifier with SIGKILL, as a crash or an OOM kill would:
// no graceful shutdown, no deferred write. It waits until it is gone.
func (v *Verifier) Kill() error {
	if v.proc == nil {
		return nil
	}
	if exited, _ := v.proc.Exited(); exited {
		return nil
	}
	if err := syscall.Kill(v.proc.PID(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing confidant-verifier: %w", err)
	}
	<-v.proc.Done()
	return nil
}

// Metric reads a metric from the verifier's /metrics: the sum of its
// series (one, for a metric without labels).
func (v *Verifier) Metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest)
		x, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum, found = sum+x, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%w: %s", ErrNoMetric, name)
	}
	return sum, nil
}

// ErrNoMetric means /metrics has no series of the metric (yet).
var ErrNoMetric = errors.New("no such metric")

// VerifyAudit runs `admin audit verify` and reports whether the audit
// log's hash chain is whole, with the report as printed.
func (v *Verifier) VerifyAudit(ctx context.Context) (ok bool, report string, err error) {
	out, err := v.admin(ctx, "--json", "audit", "verify")
	var rep struct {
		OK bool `json:"ok"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return false, string(out), errors.Join(err, fmt.Errorf("decoding the audit report: %w", jerr))
	}
	return rep.OK, string(out), nil
}
