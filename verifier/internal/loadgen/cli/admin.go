package cli

import (
	"context"

	"github.com/confidant-cvm/confidant/verifier/internal/admin"
	"github.com/confidant-cvm/confidant/verifier/internal/loadgen"
)

// keyAdmin creates release keys through the verifier's admin API.
type keyAdmin struct{ c *admin.Client }

// newAdmin connects to the verifier's admin socket.
func newAdmin(socket string) (loadgen.KeyAdmin, error) {
	c, err := admin.NewClient(admin.ClientConfig{Socket: socket})
	if err != nil {
		return nil, err
	}
	return keyAdmin{c}, nil
}

// CreateKey creates a platform-managed key and returns its material.
func (a keyAdmin) CreateKey(ctx context.Context, name, releasePolicy string) ([]byte, error) {
	resp, err := a.c.CreateKey(ctx, admin.CreateKeyRequest{Name: name, ReleasePolicy: releasePolicy, ReturnKey: true})
	if err != nil {
		return nil, err
	}
	return admin.DecodeKey(resp.KeyMaterial)
}
