package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	admin "github.com/confidant-cvm/confidant/shared/api/admin"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// DefaultAdminMaxBody caps admin request bodies (policies, reference
// values).
const DefaultAdminMaxBody = 8 << 20

// KeyManager manages release keys (release.Service implements it).
type KeyManager interface {
	Create(ctx context.Context, name string, policy []byte, returnKey bool) (store.ReleaseKey, []byte, error)
	Import(ctx context.Context, name string, material, policy []byte) (store.ReleaseKey, error)
	Rotate(ctx context.Context, name string, material []byte, returnKey bool) (store.ReleaseKey, int, []byte, error)
	Delete(ctx context.Context, name string, version int) error
	SetPolicy(ctx context.Context, name string, policy []byte) (store.ReleaseKey, error)
	Get(ctx context.Context, name string) (store.ReleaseKey, error)
	List(ctx context.Context) ([]store.ReleaseKey, error)
}

// PolicyLoader loads appraisal policies and reference values into the
// store and swaps them in live.
type PolicyLoader interface {
	LoadPolicy(ctx context.Context, kind string, src []byte) (*policy.Policy, *policy.Set, error)
	LoadReferenceValues(ctx context.Context, content []byte) (*policy.Set, error)
}

// AuditLog is the audit log's store.
type AuditLog interface {
	store.AuditReader
	AppendAudit(ctx context.Context, r store.AuditRecord) (int64, error)
}

// AdminConfig configures the admin handler. All fields without a stated
// default are required.
type AdminConfig struct {
	Keys     KeyManager
	Policies PolicyLoader
	Audit    AuditLog
	Metrics  *Metrics
	// MaxBodyBytes caps request bodies; zero means DefaultAdminMaxBody.
	MaxBodyBytes int64
	// Log receives failures and admin actions; nil discards them.
	Log *slog.Logger
}

type adminHandler struct {
	AdminConfig
	base
}

// NewAdmin returns the admin API's http.Handler (see package admin for the
// routes). It must only be served on the admin listener.
func NewAdmin(cfg AdminConfig) (http.Handler, error) {
	var errs []error
	for name, missing := range map[string]bool{
		"key manager": cfg.Keys == nil, "policy loader": cfg.Policies == nil, "audit log": cfg.Audit == nil,
		"metrics": cfg.Metrics == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("no %s", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring admin API: %w", err)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultAdminMaxBody
	}
	h := &adminHandler{AdminConfig: cfg, base: base{log: cfg.Log, metrics: cfg.Metrics}}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { h.writeError(w, r, fault.ErrNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { h.writeError(w, r, fault.ErrMethod) })
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, h.MaxBodyBytes)
			w.Header().Set("Cache-Control", "no-store")
			next.ServeHTTP(w, r)
		})
	})
	r.Get(admin.PathKeys, h.listKeys)
	r.Post(admin.PathKeys, h.createKey)
	r.Get(admin.PathKeys+"/{name}", h.getKey)
	r.Delete(admin.PathKeys+"/{name}", h.deleteKey)
	r.Post(admin.PathKeys+"/{name}/rotate", h.rotateKey)
	r.Put(admin.PathKeys+"/{name}/release-policy", h.setPolicy)
	r.Put(admin.PathPolicies+"/{kind}", h.loadPolicy)
	r.Put(admin.PathReferenceValues, h.loadReference)
	r.Get(admin.PathAudit, h.listAudit)
	r.Get(admin.PathAuditExport, h.exportAudit)
	r.Get(admin.PathAuditVerify, h.verifyAudit)
	return r, nil
}

// caller names who called: the client certificate's subject on TCP, the
// socket otherwise (only its owner can connect).
func caller(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return "admin:" + r.TLS.PeerCertificates[0].Subject.String()
	}
	return "admin:unix-socket"
}

// audit records an admin action; failing to record it is logged (the
// action itself has happened).
func (h *adminHandler) audit(r *http.Request, event, key string, version int, err error, reasons ...string) {
	key = attest.AuditKeyName(key)
	rec := store.AuditRecord{Time: time.Now().UTC(), Event: "admin." + event, Outcome: "ok", KeyName: key,
		KeyVersion: version, Remote: caller(r), Reasons: reasons}
	if err != nil {
		_, body := fault.Classify(err)
		rec.Outcome, rec.Reasons = body.Error, body.Reasons
	}
	if _, aerr := h.Audit.AppendAudit(context.WithoutCancel(r.Context()), rec); aerr != nil {
		h.log.Error("writing audit record of an admin action", "event", event, "key", key, "err", aerr)
	}
	if err == nil {
		h.log.Info("admin action", "event", event, "key", key, "version", version, "caller", rec.Remote)
	}
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var maxBytes *http.MaxBytesError
		if errors.As(err, &maxBytes) {
			return err
		}
		return fmt.Errorf("%w: %v", fault.ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", fault.ErrBadRequest)
	}
	return nil
}

// keyInfo converts a stored key's metadata; withPolicy adds the policy
// source.
func keyInfo(k store.ReleaseKey, withPolicy bool) admin.Key {
	out := admin.Key{Name: k.Name, Origin: k.Origin, ReleasePolicySHA256: k.PolicySHA256,
		CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt, Versions: []admin.KeyVersion{}}
	if withPolicy {
		out.ReleasePolicy = string(k.Policy)
	}
	for _, v := range k.Versions {
		out.Versions = append(out.Versions, admin.KeyVersion{Version: v.Version, KEKID: v.KEKID, CreatedAt: v.CreatedAt})
		out.LatestVersion = max(out.LatestVersion, v.Version)
	}
	return out
}

func (h *adminHandler) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := h.Keys.List(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := admin.KeyList{Keys: []admin.Key{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyInfo(k, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *adminHandler) getKey(w http.ResponseWriter, r *http.Request) {
	k, err := h.Keys.Get(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, keyInfo(k, true))
}

func decodeMaterial(s string) ([]byte, error) {
	b, err := admin.DecodeKey(s)
	if err != nil {
		return nil, fmt.Errorf("%w: key_material is not base64url", release.ErrInvalid)
	}
	return b, nil
}

func (h *adminHandler) createKey(w http.ResponseWriter, r *http.Request) {
	var req admin.CreateKeyRequest
	if err := decodeJSON(r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	var (
		k       store.ReleaseKey
		secret  []byte
		err     error
		event   = "key.create"
		created = func() {
			version := 1
			if err != nil {
				version = 0
			}
			h.audit(r, event, req.Name, version, err)
			if err != nil {
				h.writeError(w, r, err)
				return
			}
			out := admin.KeyResponse{Key: keyInfo(k, false), Version: 1}
			if secret != nil {
				out.KeyMaterial = admin.EncodeKey(secret)
				clear(secret)
			}
			writeJSON(w, http.StatusCreated, out)
		}
	)
	if req.KeyMaterial == "" {
		k, secret, err = h.Keys.Create(r.Context(), req.Name, []byte(req.ReleasePolicy), req.ReturnKey)
		created()
		return
	}
	event = "key.import"
	if req.ReturnKey {
		err = fmt.Errorf("%w: return_key is for generated keys; an imported key is never returned", release.ErrInvalid)
		created()
		return
	}
	material, derr := decodeMaterial(req.KeyMaterial)
	if derr != nil {
		err = derr
		created()
		return
	}
	k, err = h.Keys.Import(r.Context(), req.Name, material, []byte(req.ReleasePolicy))
	clear(material)
	created()
}

func (h *adminHandler) rotateKey(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	var req admin.RotateKeyRequest
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			h.writeError(w, r, fmt.Errorf("%w: rotate request: %v", fault.ErrBadRequest, err))
			return
		}
	}
	var material []byte
	if req.KeyMaterial != "" {
		if material, err = decodeMaterial(req.KeyMaterial); err != nil {
			h.writeError(w, r, err)
			return
		}
		defer clear(material)
	}
	k, version, secret, err := h.Keys.Rotate(r.Context(), name, material, req.ReturnKey)
	h.audit(r, "key.rotate", name, version, err)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := admin.KeyResponse{Key: keyInfo(k, false), Version: version}
	if secret != nil {
		out.KeyMaterial = admin.EncodeKey(secret)
		clear(secret)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *adminHandler) deleteKey(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			h.writeError(w, r, fmt.Errorf("%w: version %q", fault.ErrBadRequest, v))
			return
		}
		version = n
	}
	err := h.Keys.Delete(r.Context(), name, version)
	h.audit(r, "key.delete", name, version, err)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, admin.DeleteResponse{Name: name, Version: version})
}

func (h *adminHandler) setPolicy(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	var req admin.SetPolicyRequest
	if err := decodeJSON(r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	k, err := h.Keys.SetPolicy(r.Context(), name, []byte(req.ReleasePolicy))
	if err == nil {
		h.audit(r, "key.set-policy", name, 0, nil, "release policy sha256 "+k.PolicySHA256)
	} else {
		h.audit(r, "key.set-policy", name, 0, err)
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, admin.KeyResponse{Key: keyInfo(k, false)})
}

// errEmptyBody marks an empty body where one is optional.
var errEmptyBody = errors.New("empty body")

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: %w", fault.ErrBadRequest, errEmptyBody)
	}
	return b, nil
}

// maxAuditKind bounds the escaped form of a TEE kind the audit log records
// for a refused policy load.
const maxAuditKind = 64

func (h *adminHandler) loadPolicy(w http.ResponseWriter, r *http.Request) {
	kind := chi.URLParam(r, "kind")
	src, err := readBody(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	p, set, err := h.Policies.LoadPolicy(r.Context(), kind, src)
	if err != nil {
		h.audit(r, "policy.load", "", 0, err, "kind "+termsafe.Clip(kind, maxAuditKind))
		h.writeError(w, r, err)
		return
	}
	h.audit(r, "policy.load", "", 0, nil, "kind "+kind, "policy "+p.ID, "sha256 "+p.SHA256)
	writeJSON(w, http.StatusOK, admin.PolicyResponse{Kind: kind, ID: p.ID, SHA256: p.SHA256, Kinds: set.Kinds()})
}

func (h *adminHandler) loadReference(w http.ResponseWriter, r *http.Request) {
	content, err := readBody(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	set, err := h.Policies.LoadReferenceValues(r.Context(), content)
	if err != nil {
		h.audit(r, "reference.load", "", 0, err)
		h.writeError(w, r, err)
		return
	}
	h.audit(r, "reference.load", "", 0, nil, "sha256 "+set.Reference.SHA256)
	writeJSON(w, http.StatusOK, admin.ReferenceResponse{SHA256: set.Reference.SHA256})
}

func auditEntry(rec store.AuditRecord) admin.AuditEntry {
	reasons := rec.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	return admin.AuditEntry{ID: rec.ID, Time: rec.Time, Event: rec.Event, Outcome: rec.Outcome, TEE: rec.TEE,
		Subject: rec.Subject, TokenID: rec.TokenID, KeyName: rec.KeyName, KeyVersion: rec.KeyVersion,
		PolicyID: rec.PolicyID, PolicySHA256: rec.PolicySHA256, Remote: rec.Remote, Reasons: reasons,
		PrevSHA256: hex.EncodeToString(rec.PrevHash)}
}

// maxAuditPage caps one page of GET /v1/admin/audit.
const maxAuditPage = 1000

func (h *adminHandler) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var (
		after int64
		limit = 100
		err   error
	)
	if s := q.Get("after"); s != "" {
		if after, err = strconv.ParseInt(s, 10, 64); err != nil || after < 0 {
			h.writeError(w, r, fmt.Errorf("%w: after %q", fault.ErrBadRequest, s))
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > maxAuditPage {
			h.writeError(w, r, fmt.Errorf("%w: limit %q: want 1 to %d", fault.ErrBadRequest, s, maxAuditPage))
			return
		}
	}
	head, err := h.Audit.AuditHead(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	recs, err := h.Audit.AuditRecords(r.Context(), after, limit)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := admin.AuditList{Entries: []admin.AuditEntry{}, HeadID: head.LastID}
	for _, rec := range recs {
		out.Entries = append(out.Entries, auditEntry(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

// exportAudit streams the whole log as JSON lines. A store failure after
// the first line ends the stream early (the client sees a short export).
func (h *adminHandler) exportAudit(w http.ResponseWriter, r *http.Request) {
	var after int64
	started := false
	for {
		recs, err := h.Audit.AuditRecords(r.Context(), after, maxAuditPage)
		if err != nil {
			if !started {
				h.writeError(w, r, err)
			} else {
				h.log.Error("exporting the audit log", "after", after, "err", err)
			}
			return
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		for _, rec := range recs {
			b, err := json.Marshal(auditEntry(rec))
			if err != nil {
				h.log.Error("exporting the audit log", "id", rec.ID, "err", err)
				return
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return
			}
			after = rec.ID
		}
		if len(recs) < maxAuditPage {
			return
		}
	}
}

func (h *adminHandler) verifyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := store.VerifyAudit(r.Context(), h.Audit)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := admin.AuditReport{OK: rep.OK, Entries: rep.Entries, HeadID: rep.HeadID, HeadSHA256: rep.HeadSHA256}
	for _, p := range rep.Problems {
		out.Problems = append(out.Problems, admin.AuditProblem{ID: p.ID, Reason: p.Reason})
	}
	if !rep.OK {
		h.log.Warn("audit log chain is broken", "problems", len(rep.Problems))
	}
	writeJSON(w, http.StatusOK, out)
}
