package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/confidant-cvm/confidant/hostd/internal/guest"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
)

// Client talks to hostd's API socket.
type Client struct {
	http *http.Client
}

// NewClient returns a client for the unix socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// Error is an API error response. errors.Is matches it against the sentinel
// its code stands for (guest.ErrNotFound, spec.ErrInvalid, ...).
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel for the error's code, if any.
func (e *Error) Unwrap() error {
	for _, c := range codes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hostd"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling hostd: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading hostd response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
			return &Error{Status: resp.StatusCode, Code: "unknown", Message: fmt.Sprintf("hostd answered %s", resp.Status)}
		}
		return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decoding hostd response: %w", err)
		}
	}
	return nil
}

func guestPath(name string, suffix string) string {
	return "/v1/guests/" + url.PathEscape(name) + suffix
}

// Create sends a spec (paths already absolute).
func (c *Client) Create(ctx context.Context, s *spec.Spec) (guest.Guest, error) {
	var g guest.Guest
	return g, c.do(ctx, http.MethodPost, "/v1/guests", s, &g)
}

// List returns all guests.
func (c *Client) List(ctx context.Context) ([]guest.Guest, error) {
	var gs []guest.Guest
	return gs, c.do(ctx, http.MethodGet, "/v1/guests", nil, &gs)
}

// Get returns one guest.
func (c *Client) Get(ctx context.Context, name string) (guest.Guest, error) {
	var g guest.Guest
	return g, c.do(ctx, http.MethodGet, guestPath(name, ""), nil, &g)
}

// Start starts a guest.
func (c *Client) Start(ctx context.Context, name string) (guest.Guest, error) {
	var g guest.Guest
	return g, c.do(ctx, http.MethodPost, guestPath(name, "/start"), nil, &g)
}

// Stop stops a guest.
func (c *Client) Stop(ctx context.Context, name string, req StopRequest) (guest.Guest, error) {
	var g guest.Guest
	return g, c.do(ctx, http.MethodPost, guestPath(name, "/stop"), req, &g)
}

// Delete deletes a guest.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, guestPath(name, ""), nil, nil)
}

// Console copies the guest's serial log to w; with follow it keeps
// streaming until ctx ends.
func (c *Client) Console(ctx context.Context, name string, follow bool, w io.Writer) error {
	q := ""
	if follow {
		q = "?follow=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://hostd"+guestPath(name, "/console")+q, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling hostd: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &Error{Status: resp.StatusCode, Code: "unknown", Message: resp.Status}
	}
	_, err = io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading console: %w", err)
	}
	return nil
}
