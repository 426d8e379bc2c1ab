package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchInputJSON is the policy input of one appraisal of the verifier's
// test guest (simulated SNP report fields, vTPM claims with 24 PCRs and a
// UEFI Secure Boot event summary), as the appraise package builds it.
const benchInputJSON = `{"kind":"sim-sev-snp","runtime":{},"tee":{"author_key_digest":"000000000000000000000000000000000` +
	`000000000000000000000000000000000000000000000000000000000000000","chip_id":"712802cccc9dc58f3ced` +
	`b6265c15779b3897796716bd00bb1830a2b17b416f242c571529f3d527b8ce47b2bd7a2be188c4e47bf0dcf49d45521f` +
	`12ea088cca96","committed_firmware":{"build":21,"major":1,"minor":55},"committed_tcb":{"bl":4,"mi` +
	`crocode":213,"snp":22,"tee":0,"value":15354459979566284804},"current_firmware":{"build":21,"majo` +
	`r":1,"minor":55},"current_tcb":{"bl":4,"microcode":213,"snp":22,"tee":0,"value":1535445997956628` +
	`4804},"family_id":"00000000000000000000000000000000","guest_svn":0,"host_data":"0000000000000000` +
	`000000000000000000000000000000000000000000000000","id_key_digest":"00000000000000000000000000000` +
	`0000000000000000000000000000000000000000000000000000000000000000000","image_id":"000000000000000` +
	`00000000000000000","kind":"sim-sev-snp","launch_tcb":{"bl":4,"microcode":213,"snp":22,"tee":0,"v` +
	`alue":15354459979566284804},"measurement":"4b6d4295b535f4ea2dac08b848e610ca4e8591711cfa36aaa5f0e` +
	`1515883e59e1378466cfa5c7d875c312e4809677d5e","platform_info":{"alias_check_complete":false,"ciph` +
	`ertext_hiding_enabled":false,"ecc_enabled":false,"rapl_disabled":false,"smt_enabled":true,"tio_e` +
	`nabled":false,"tsme_enabled":false,"value":1},"policy":{"abi_major":0,"abi_minor":31,"ciphertext` +
	`_hiding":false,"cxl_allowed":false,"debug":false,"mem_aes_256_xts":false,"migration_agent":false` +
	`,"page_swap_disabled":false,"rapl_disabled":false,"single_socket":false,"smt":true,"value":19663` +
	`9},"product":"Milan","report_data":"983e9b101282db9d314acf9090e8551228fa559e91d5fa89252fef3d9a65` +
	`02d72623b78e06071a657fdd7fbab968a520b8afabbeb9ce9180fdcd4d601f1de80c","report_id":"84fbe7a3eff6d` +
	`3b6053ecb17a6e8ee763243cdb5759da615a43f8a6943f45232","report_id_ma":"fffffffffffffffffffffffffff` +
	`fffffffffffffffffffffffffffffffffffff","reported_tcb":{"bl":4,"microcode":213,"snp":22,"tee":0,"` +
	`value":15354459979566284804},"signer_info":{"author_key_en":false,"mask_chip_key":false,"signing` +
	`_key":"vcek"},"simulated":true,"version":3,"vmpl":0},"tpm":{"ak_thumbprint":"JPZfLYgr2-1xUYcNnhO` +
	`e0Erut4zAGKguB-C-Umifhdw","events":{"bank":"sha256","count":97,"efi_apps":["f4d5e3bcb0f26d2bbb8d` +
	`4d8c0b2a0a1c2b5f4e7d6c8a9b0c1d2e3f4a5b6c7d8e","1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70819` +
	`2a3b4c5d6e7f809"],"firmware_version":"EDK II","per_pcr":{"0":12,"1":20,"14":8,"2":1,"3":1,"4":9,` +
	`"5":5,"6":1,"7":40},"separators":[0,1,2,3,4,5,6,7],"uefi":true},"pcrs":{"sha256":{"0":"24af52a4f` +
	`429b71a3184a6d64cddad17e54ea030e2aa6576bf3a5a3d8bd3328f","1":"454220afaa80c83c3839f6cccd8b3c88bf` +
	`4f562316a9dda1121c578c9e005a53","10":"0000000000000000000000000000000000000000000000000000000000` +
	`000000","11":"0000000000000000000000000000000000000000000000000000000000000000","12":"0000000000` +
	`000000000000000000000000000000000000000000000000000000","13":"0000000000000000000000000000000000` +
	`000000000000000000000000000000","14":"d8f57ebcc1a23cc46832696e1a657f720e1be8f5b405bb7204682114e3` +
	`63b455","15":"0000000000000000000000000000000000000000000000000000000000000000","16":"0000000000` +
	`000000000000000000000000000000000000000000000000000000","17":"ffffffffffffffffffffffffffffffffff` +
	`ffffffffffffffffffffffffffffff","18":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffff` +
	`ffffff","19":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","2":"3d458cfe55c` +
	`c03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969","20":"fffffffffffffffffffffffffffffffffff` +
	`fffffffffffffffffffffffffffff","21":"fffffffffffffffffffffffffffffffffffffffffffffffffffffffffff` +
	`fffff","22":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","23":"00000000000` +
	`00000000000000000000000000000000000000000000000000000","3":"3d458cfe55cc03ea1f443f1562beec8df51c` +
	`75e14a9fcf9a7234a13f198e7969","4":"758a3d35f1b0ff5b135dacd07db0c8132c0ac665d944090d4bf96e66447a2` +
	`45c","5":"53d0ee36163219201e686167bbb71ec505b3ba2917b9d9183ed84aad26cfeb89","6":"3d458cfe55cc03e` +
	`a1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969","7":"5fd54361d580eb7592adb8deb236ff35444ceeac` +
	`7148f24b3de63c041f12b3da","8":"25c3874041ebd4e9a21b6ed71b624a7bfa99907a8dcea7f129a4c64cbaf5829a"` +
	`,"9":"d43b2f61eb18b4791812ff5f20ab20e4ef621ba683370bedf5dbdf518b3a8078"}},"secure_boot":{"enable` +
	`d":true,"known":true}}}`

// benchReference affirms benchInputJSON under both policies: its
// measurement, PCR 0 and 7 pinned, a minimum TCB below the reported one.
const benchReference = `{"version":1,
"sim-sev-snp":{"measurements":{"4b6d4295b535f4ea2dac08b848e610ca4e8591711cfa36aaa5f0e1515883e59e1378466cfa5c7d875c312e4809677d5e":{"name":"bench-image"}},
  "pcrs":{"sha256":{"0":["24af52a4f429b71a3184a6d64cddad17e54ea030e2aa6576bf3a5a3d8bd3328f"],"7":["5fd54361d580eb7592adb8deb236ff35444ceeac7148f24b3de63c041f12b3da"]}}},
"sev-snp":{"allow_smt":true,"minimum_tcb":{"bl":3,"tee":0,"snp":14,"microcode":209},
  "measurements":{"4b6d4295b535f4ea2dac08b848e610ca4e8591711cfa36aaa5f0e1515883e59e1378466cfa5c7d875c312e4809677d5e":{"name":"bench-image"}},
  "pcrs":{"sha256":{"0":["24af52a4f429b71a3184a6d64cddad17e54ea030e2aa6576bf3a5a3d8bd3328f"],"7":["5fd54361d580eb7592adb8deb236ff35444ceeac7148f24b3de63c041f12b3da"]}}}}`

// BenchmarkEvaluate evaluates the shipped appraisal policies (prepared
// once, at load) over a realistic input: the development policy for the
// simulated TEE, and the production SNP policy over the same facts
// presented as real SNP evidence. Both affirm.
func BenchmarkEvaluate(b *testing.B) {
	ref := filepath.Join(b.TempDir(), "reference.json")
	if err := os.WriteFile(ref, []byte(benchReference), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	set, err := Load(ctx, []string{
		filepath.Join(shipped, "appraisal/sim_development.rego"),
		filepath.Join(shipped, "appraisal/snp_production.rego"),
	}, ref, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"sim-sev-snp", "sev-snp"} {
		p, err := set.For(kind)
		if err != nil {
			b.Fatal(err)
		}
		src := benchInputJSON
		if kind == "sev-snp" {
			src = strings.Replace(strings.Replace(src, `"kind":"sim-sev-snp"`, `"kind":"sev-snp"`, 2), `"simulated":true`, `"simulated":false`, 1)
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(src)))
		dec.UseNumber()
		var input map[string]any
		if err := dec.Decode(&input); err != nil {
			b.Fatal(err)
		}
		b.Run(strings.TrimPrefix(p.ID, "confidant.appraisal."), func(b *testing.B) {
			for b.Loop() {
				d, err := p.Evaluate(ctx, input)
				if err != nil {
					b.Fatal(err)
				}
				if d.Verdict != Affirming {
					b.Fatalf("verdict %s: %v", d.Verdict, d.Reasons)
				}
			}
		})
	}
}
