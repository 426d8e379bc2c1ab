package token

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// benchClaimsJSON is the claim set of a token the verifier issued in its
// appraisal tests (simulated SNP + vTPM, the 11 PCRs not in their reset
// state, an RSA-2048 runtime key) without the claims Sign stamps: a token
// of the real size (5.6 KB; 6.8 KB before reset PCRs were left out).
const benchClaimsJSON = `{"aud":"disk","dbgstat":3,"eat_nonce":"05gwEyGBw9I0FmuTxINQxVkUATj563RvNxqY0GglnowAAAAAawjHQf7Eo` +
	`eqxEVt7eqmZ5yq5kxEBaOBmskVXeA","hwmodel":"confidant simulated AMD SEV-SNP (Milan)","policy":{"id` +
	`":"confidant.appraisal.sim_development","reference_sha256":"2b541420d124e6c36f53161d0458d8146236` +
	`dbe3c2dc28b5fd29c6b37ced654c","sha256":"86911b1a270526f24a858a8bd20250a0288469ad6c5f8218308f3820` +
	`7df3bed1"},"runtime":{"keys":{"keys":[{"e":"AQAB","kty":"RSA","n":"yGZLHoL4RBPF20EXb29Vo45qhXch8` +
	`HoXlo1USYMctxyBPBmN2oqhcgXexgtfw3YcvqhnbmsSKr36WfwwSum7ktW-XnIYERQRonPihfhFM1y0dBQoxw_I7G6b6x-Rb` +
	`X_Jwc3kzBkToaD6Rlw_7Mz3C64qxnlqNsi-5SAvRvmscKIW731ZN5l04_JJlce6uM7A01I9l0ha-tF77nI849GZo0kTwuE5s` +
	`wP1dJXl7Qk0_MEc4jencwTRqWMutMqecYW0E9vykX4kzt_qETlC3uT6RppzBetwW0recEjSPqvwTOxfWhLtyRJ1NaczqU0EJ` +
	`9YTIB7U1HVOZsT9CdhxGPWnQw"}]}},"secboot":true,"status":"affirming","sub":"sim-sev-snp:4e0be8206f` +
	`95ce40ad012c86f1bbe546e25494403fe8b4bf19a1875ea06aa97b","swname":"confidant-test-image","tee":{"` +
	`author_key_digest":"0000000000000000000000000000000000000000000000000000000000000000000000000000` +
	`00000000000000000000","chip_id":"712802cccc9dc58f3cedb6265c15779b3897796716bd00bb1830a2b17b416f2` +
	`42c571529f3d527b8ce47b2bd7a2be188c4e47bf0dcf49d45521f12ea088cca96","committed_firmware":{"build"` +
	`:21,"major":1,"minor":55},"committed_tcb":{"bl":4,"microcode":213,"snp":22,"tee":0,"value":15354` +
	`459979566284804},"current_firmware":{"build":21,"major":1,"minor":55},"current_tcb":{"bl":4,"mic` +
	`rocode":213,"snp":22,"tee":0,"value":15354459979566284804},"family_id":"000000000000000000000000` +
	`00000000","guest_svn":0,"host_data":"00000000000000000000000000000000000000000000000000000000000` +
	`00000","id_key_digest":"000000000000000000000000000000000000000000000000000000000000000000000000` +
	`000000000000000000000000","image_id":"00000000000000000000000000000000","kind":"sim-sev-snp","la` +
	`unch_tcb":{"bl":4,"microcode":213,"snp":22,"tee":0,"value":15354459979566284804},"measurement":"` +
	`4b6d4295b535f4ea2dac08b848e610ca4e8591711cfa36aaa5f0e1515883e59e1378466cfa5c7d875c312e4809677d5e` +
	`","platform_info":{"alias_check_complete":false,"ciphertext_hiding_enabled":false,"ecc_enabled":` +
	`false,"rapl_disabled":false,"smt_enabled":true,"tio_enabled":false,"tsme_enabled":false,"value":` +
	`1},"policy":{"abi_major":0,"abi_minor":31,"ciphertext_hiding":false,"cxl_allowed":false,"debug":` +
	`false,"mem_aes_256_xts":false,"migration_agent":false,"page_swap_disabled":false,"rapl_disabled"` +
	`:false,"single_socket":false,"smt":true,"value":196639},"product":"Milan","report_data":"983e9b1` +
	`01282db9d314acf9090e8551228fa559e91d5fa89252fef3d9a6502d72623b78e06071a657fdd7fbab968a520b8afabb` +
	`eb9ce9180fdcd4d601f1de80c","report_id":"84fbe7a3eff6d3b6053ecb17a6e8ee763243cdb5759da615a43f8a69` +
	`43f45232","report_id_ma":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","rep` +
	`orted_tcb":{"bl":4,"microcode":213,"snp":22,"tee":0,"value":15354459979566284804},"signer_info":` +
	`{"author_key_en":false,"mask_chip_key":false,"signing_key":"vcek"},"simulated":true,"version":3,` +
	`"vmpl":0},"tpm":{"ak_thumbprint":"JPZfLYgr2-1xUYcNnhOe0Erut4zAGKguB-C-Umifhdw","pcrs":{"sha256":` +
	`{"0":"24af52a4f429b71a3184a6d64cddad17e54ea030e2aa6576bf3a5a3d8bd3328f","1":"454220afaa80c83c383` +
	`9f6cccd8b3c88bf4f562316a9dda1121c578c9e005a53","14":"d8f57ebcc1a23cc46832696e1a657f720e1be8f5b40` +
	`5bb7204682114e363b455","2":"3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969","3` +
	`":"3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969","4":"758a3d35f1b0ff5b135dac` +
	`d07db0c8132c0ac665d944090d4bf96e66447a245c","5":"53d0ee36163219201e686167bbb71ec505b3ba2917b9d91` +
	`83ed84aad26cfeb89","6":"3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969","7":"5` +
	`fd54361d580eb7592adb8deb236ff35444ceeac7148f24b3de63c041f12b3da","8":"25c3874041ebd4e9a21b6ed71b` +
	`624a7bfa99907a8dcea7f129a4c64cbaf5829a","9":"d43b2f61eb18b4791812ff5f20ab20e4ef621ba683370bedf5d` +
	`bdf518b3a8078"}}}}`

func benchClaims(b *testing.B) *Claims {
	b.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(benchClaimsJSON)))
	dec.UseNumber()
	var c Claims
	if err := dec.Decode(&c); err != nil {
		b.Fatal(err)
	}
	c.Extra = map[string]any{"development": true}
	return &c
}

// BenchmarkSign signs a realistic claim set (ES256): encoding the claims,
// the JWS and one P-256 signature.
func BenchmarkSign(b *testing.B) {
	f := newFixture(b, ES256)
	c := benchClaims(b)
	for b.Loop() {
		if _, err := f.iss.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssuerVerify checks a realistic token as the key release
// handler does (Issuer.VerifyClaims: algorithm allow-list, kid, signature,
// iss, aud, times).
func BenchmarkIssuerVerify(b *testing.B) {
	f := newFixture(b, ES256)
	tok, err := f.iss.Sign(benchClaims(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := f.iss.VerifyClaims(ctx, tok, "disk"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelyingPartyVerify checks a realistic token as a relying party
// does with jwx, two ways. The JWK Set was fetched from the JWKS endpoint
// once and is cached.
//
//   - parse: jwt.Parse with the key set: the token is parsed, its
//     signature verified with the key named by its kid, the claims decoded
//     into a jwt.Token, and iss, aud and the times validated. One call; it
//     decodes every claim into maps.
//   - fast: the recipe in verifier/README.md for relying parties that
//     check many tokens: the set's keys exported once into a map by kid;
//     per token the header's kid and alg read (jwsbb), the key looked up,
//     jws.VerifyCompactFast, and the payload decoded into a struct of the
//     claims the relying party uses, iss, aud and the times checked.
func BenchmarkRelyingPartyVerify(b *testing.B) {
	f := newFixture(b, ES256)
	tok, err := f.iss.Sign(benchClaims(b))
	if err != nil {
		b.Fatal(err)
	}
	pub, err := f.keys.PublicSet()
	if err != nil {
		b.Fatal(err)
	}
	jwks, err := json.Marshal(pub)
	if err != nil {
		b.Fatal(err)
	}
	set, err := jwk.Parse(jwks) // what the relying party fetched
	if err != nil {
		b.Fatal(err)
	}
	now := f.clock.now().Add(time.Minute)
	raw := []byte(tok)
	b.Run("parse", func(b *testing.B) {
		clock := jwt.ClockFunc(func() time.Time { return now })
		for b.Loop() {
			if _, err := jwt.Parse(raw, jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithIssuer(f.iss.Issuer()),
				jwt.WithAudience("disk"), jwt.WithClock(clock)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		rp, err := newFastRP(set, f.iss.Issuer(), "disk")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			c, err := rp.verify(raw, now)
			if err != nil {
				b.Fatal(err)
			}
			if c.Status != Affirming {
				b.Fatalf("status %q", c.Status)
			}
		}
	})
}
