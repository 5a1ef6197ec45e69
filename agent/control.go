package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/jobs"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// The control socket carries the commands that change things by hand
// (start and cancel block jobs). It is a unix socket, mode 0660, owned by
// root and the configured group; the kernel's peer credentials are
// checked on every connection too, so a socket file whose mode was
// loosened, or a descriptor passed on, does not widen who may use it. It
// is never the metrics listener.

type peerKey struct{}

// peer is who is on the other end of a control connection.
type peer struct {
	uid, gid uint32
	pid      int32
	err      error
}

func (a *Agent) serveControl(ctx context.Context, wg *sync.WaitGroup) error {
	path := a.cfg.ControlSocket
	if path == "" {
		return nil
	}
	gid := -1
	if g := a.cfg.ControlGroup; g != "" {
		grp, err := user.LookupGroup(g)
		if err != nil {
			return fmt.Errorf("control_group %s: %w", g, err)
		}
		gid, _ = strconv.Atoi(grp.Gid)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		// Another agent serves it: leave it be. This one runs on, only
		// without commands by hand.
		c.Close()
		a.log.Error("control socket in use by another process; jobs cannot be started or cancelled by hand through this agent", "path", path)
		return nil
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chown(path, 0, gid); err != nil && os.Geteuid() == 0 {
		ln.Close()
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: a.controlHandler(gid), ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		}}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("control socket", "error", err.Error())
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		os.Remove(path)
	}()
	return nil
}

func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{err: errors.New("not a unix connection")}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if credErr != nil {
		return peer{err: credErr}
	}
	return peer{uid: cred.Uid, gid: cred.Gid, pid: cred.Pid}
}

// allowed: root, or a member of the control group (primary or
// supplementary, read from /proc for the peer's pid).
func (p peer) allowed(gid int) error {
	switch {
	case p.err != nil:
		return fmt.Errorf("peer credentials unknown: %w", p.err)
	case p.uid == 0:
		return nil
	case gid < 0:
		return fmt.Errorf("uid %d is not root, and no control_group is configured", p.uid)
	case int(p.gid) == gid:
		return nil
	}
	for _, g := range procGroups(p.pid) {
		if g == gid {
			return nil
		}
	}
	return fmt.Errorf("uid %d is neither root nor in the control group (gid %d)", p.uid, gid)
}

func procGroups(pid int32) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			var out []int
			for _, f := range strings.Fields(rest) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
			return out
		}
	}
	return nil
}

func (a *Agent) controlHandler(gid int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		if a.jobs == nil {
			writeJSON(w, []api.Job{})
			return
		}
		jobs, err := a.jobs.Jobs()
		if err != nil {
			controlError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, wireJobs(jobs))
	})
	mux.HandleFunc("GET /v1/fleet", func(w http.ResponseWriter, r *http.Request) {
		v, err := a.fleetView(r.Context())
		switch {
		case errors.Is(err, errNoFleet):
			controlError(w, http.StatusNotFound, err)
		case err != nil:
			controlError(w, http.StatusBadGateway, err)
		default:
			writeJSON(w, v)
		}
	})
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		var req api.JobRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
			controlError(w, http.StatusBadRequest, fmt.Errorf("job request: %w", err))
			return
		}
		if !jobs.Known(req.Kind) || req.VM == "" || req.Disk == "" {
			controlError(w, http.StatusBadRequest, fmt.Errorf("job request needs kind (stream, mirror, convert), vm and disk"))
			return
		}
		p, err := a.jobs.Start(r.Context(), a.exec, jobRequest(req))
		if err != nil {
			controlError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, wirePlanned(p))
	})
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if a.jobs == nil {
			controlError(w, http.StatusNotFound, state.ErrNoJob)
			return
		}
		j, err := a.jobs.Cancel(r.PathValue("id"))
		switch {
		case errors.Is(err, state.ErrNoJob):
			controlError(w, http.StatusNotFound, err)
		case err != nil:
			controlError(w, http.StatusConflict, err)
		default:
			a.log.Info("block job cancel asked by hand", "job", j.ID)
			writeJSON(w, wireJob(*j))
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		if err := p.allowed(gid); err != nil {
			a.log.Warn("control socket: peer refused", "uid", p.uid, "pid", p.pid, "error", err.Error())
			controlError(w, http.StatusForbidden, err)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func controlError(w http.ResponseWriter, status int, err error) {
	body := api.ControlError{Error: err.Error()}
	var ref *tuning.Refusal
	if errors.As(err, &ref) {
		body.Code = string(ref.Code)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
