package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// HolderConfig configures a Holder.
type HolderConfig struct {
	// PolicyFiles and ReferenceFile are loaded at start and on reload.
	PolicyFiles   []string
	ReferenceFile string
	// Options are passed to Load.
	Options Options
	// Overrides, when set, returns the documents that replace the files
	// (loaded through the admin API and kept in the store); it is read on
	// every reload.
	Overrides func(context.Context) (*Overrides, error)
	// PollEvery, when positive, makes Run reload that often, so that a
	// replica picks up documents another replica loaded into the shared
	// store.
	PollEvery time.Duration
	// OnLoad, when set, is called with each newly loaded set (for example
	// to record it in the store). An error fails the load.
	OnLoad func(context.Context, *Set) error
	// Debounce is how long to wait after a file change before reloading;
	// zero means 200 ms.
	Debounce time.Duration
	// Log receives reload events; nil discards them.
	Log *slog.Logger
}

// Holder keeps the current Set and replaces it atomically on reload. A
// failed reload keeps the previous set.
type Holder struct {
	cfg    HolderConfig
	cur    atomic.Pointer[Set]
	mu     sync.Mutex // serializes reloads
	loaded atomic.Int64
}

// NewHolder loads the files; failing to load them is an error.
func NewHolder(ctx context.Context, cfg HolderConfig) (*Holder, error) {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 200 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Holder{cfg: cfg}
	if err := h.Reload(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// Current returns the current set. It never returns nil after NewHolder.
func (h *Holder) Current() *Set { return h.cur.Load() }

// Loads returns how many sets were loaded so far (for tests and metrics).
func (h *Holder) Loads() int64 { return h.loaded.Load() }

// Reload loads the files (and the overrides) again and swaps the new set
// in. When nothing changed (same digests) the current set stays.
func (h *Holder) Reload(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, err := h.overrides(ctx)
	if err != nil {
		return err
	}
	s, err := LoadWith(ctx, h.cfg.PolicyFiles, h.cfg.ReferenceFile, o, h.cfg.Options)
	if err != nil {
		return err
	}
	return h.swap(ctx, s)
}

func (h *Holder) overrides(ctx context.Context) (*Overrides, error) {
	o := &Overrides{Policies: map[string]Source{}}
	if h.cfg.Overrides == nil {
		return o, nil
	}
	got, err := h.cfg.Overrides(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading policy overrides: %w", err)
	}
	if got != nil {
		maps.Copy(o.Policies, got.Policies)
		o.Reference = got.Reference
	}
	return o, nil
}

// Apply changes the overrides: it reads the current ones, lets change edit
// them, loads the resulting set (a broken document fails here and changes
// nothing), calls persist with it (to store the new override) and swaps it
// in. Reloads are serialized with it.
func (h *Holder) Apply(ctx context.Context, change func(*Overrides), persist func(context.Context, *Set) error) (*Set, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, err := h.overrides(ctx)
	if err != nil {
		return nil, err
	}
	change(o)
	s, err := LoadWith(ctx, h.cfg.PolicyFiles, h.cfg.ReferenceFile, o, h.cfg.Options)
	if err != nil {
		return nil, err
	}
	if err := persist(ctx, s); err != nil {
		return nil, err
	}
	if err := h.swap(ctx, s); err != nil {
		return nil, err
	}
	return h.cur.Load(), nil
}

func (h *Holder) swap(ctx context.Context, s *Set) error {
	if old := h.cur.Load(); old != nil && sameDigests(old, s) {
		h.cfg.Log.Debug("policies unchanged")
		return nil
	}
	if h.cfg.OnLoad != nil {
		if err := h.cfg.OnLoad(ctx, s); err != nil {
			return fmt.Errorf("recording loaded policies: %w", err)
		}
	}
	h.cur.Store(s)
	h.loaded.Add(1)
	attrs := []any{"reference_sha256", s.Reference.SHA256}
	for _, p := range s.Policies {
		attrs = append(attrs, slog.Group(p.ID, "sha256", p.SHA256, "kinds", p.Kinds))
	}
	h.cfg.Log.Info("policies loaded", attrs...)
	return nil
}

func sameDigests(a, b *Set) bool { return a.fingerprint() == b.fingerprint() }

// Watcher reloads a Holder when its files change or on request.
type Watcher struct {
	h *Holder
	w *fsnotify.Watcher
}

// Watch starts watching the directories of the holder's files (editors and
// config managers replace files by renaming, which a watch on the file
// itself would lose). Changes are acted on by Run; Close releases the
// watch if Run never runs.
func (h *Holder) Watch() (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching policy files: %w", err)
	}
	dirs := map[string]bool{}
	for _, f := range append([]string{h.cfg.ReferenceFile}, h.cfg.PolicyFiles...) {
		dirs[filepath.Dir(f)] = true
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watching %s: %w", d, err)
		}
	}
	return &Watcher{h: h, w: w}, nil
}

// Close stops watching.
func (w *Watcher) Close() error { return w.w.Close() }

// Run reloads on every value received from reload (SIGHUP, wired by the
// caller) and, debounced, when a watched file changes, until ctx ends; then
// it closes the watch. Reload errors are logged and the previous set stays
// in use.
func (w *Watcher) Run(ctx context.Context, reload <-chan struct{}) error {
	defer w.w.Close()
	h := w.h
	var pollC <-chan time.Time
	if h.cfg.PollEvery > 0 {
		poll := time.NewTicker(h.cfg.PollEvery)
		defer poll.Stop()
		pollC = poll.C
	}
	var (
		timer   *time.Timer
		timerC  <-chan time.Time
		trigger = func() {
			if timer == nil {
				timer = time.NewTimer(h.cfg.Debounce)
			} else {
				timer.Reset(h.cfg.Debounce)
			}
			timerC = timer.C
		}
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			h.reload(ctx, "signal")
		case ev, ok := <-w.w.Events:
			if !ok {
				return errors.New("policy file watcher closed")
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				trigger()
			}
		case err, ok := <-w.w.Errors:
			if !ok {
				return errors.New("policy file watcher closed")
			}
			h.cfg.Log.Warn("watching policy files", "err", err)
		case <-timerC:
			timerC = nil
			h.reload(ctx, "file change")
		case <-pollC:
			h.reload(ctx, "poll")
		}
	}
}

func (h *Holder) reload(ctx context.Context, why string) {
	if err := h.Reload(ctx); err != nil {
		h.cfg.Log.Error("reloading policies failed; keeping the previous ones", "trigger", why, "err", err)
	}
}
