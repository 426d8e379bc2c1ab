package cli

import (
	"context"

	adminapi "github.com/confidant-cvm/confidant/shared/api/admin"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/loadgen"
)

// keyAdmin creates release keys through the verifier's admin API.
type keyAdmin struct{ c *adminclient.Client }

// newAdmin connects to the verifier's admin socket.
func newAdmin(socket string) (loadgen.KeyAdmin, error) {
	c, err := adminclient.NewClient(adminclient.ClientConfig{Socket: socket})
	if err != nil {
		return nil, err
	}
	return keyAdmin{c}, nil
}

// CreateKey creates a platform-managed key and returns its material.
func (a keyAdmin) CreateKey(ctx context.Context, name, releasePolicy string) ([]byte, error) {
	resp, err := a.c.CreateKey(ctx, adminclient.CreateKeyRequest{Name: name, ReleasePolicy: releasePolicy, ReturnKey: true})
	if err != nil {
		return nil, err
	}
	return adminapi.DecodeKey(resp.KeyMaterial)
}
