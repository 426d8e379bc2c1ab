package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/integration/internal/harness"
	"github.com/confidant-cvm/confidant/shared/uefi"
)

// pinnedPCRs are the PCRs confidant-image predicts and the production
// policy pins: the boot application (4), the Secure Boot configuration and
// the authority that verified the image (7), the UKI's sections (11).
var pinnedPCRs = []int{4, 7, 11}

// tamperInitramfs replaces a direct-boot image's initramfs with a copy in
// which one byte of content changed.
func tamperInitramfs(t *testing.T, r *run) string {
	t.Helper()
	initrd := filepath.Join(r.world.Dir, "initrd-tampered.img")
	var err error
	if r.tamper, err = harness.TamperInitramfs(initrd, r.world.Image.Path(r.world.Image.Manifest.Initrd)); err != nil {
		t.Fatal(err)
	}
	return initrd
}

// tamperESP replaces a UEFI image's ESP with a copy whose signed UKI has
// one byte changed.
func tamperESP(t *testing.T, r *run) string {
	t.Helper()
	im := r.world.Image
	esp := filepath.Join(r.world.Dir, "esp-tampered.img")
	var err error
	if r.tamper, err = harness.TamperESP(esp, im.Path(im.Manifest.ESP), im.Path(im.Manifest.UKI)); err != nil {
		t.Fatal(err)
	}
	return esp
}

// tamperedUKIScenario is attack (a): the host changes the signed UKI and
// the firmware, enforcing Secure Boot against the guest's own variable
// store, refuses to start it. Nothing reaches the verifier.
func tamperedUKIScenario() scenario {
	return scenario{
		bootFile: tamperESP, wantFirmwareRefusal: true,
		check: func(t *testing.T, r *run) {
			for _, rec := range r.audit {
				if isEvent(rec, "attest") || isEvent(rec, "release") {
					t.Errorf("a guest whose UKI the firmware refused reached the verifier:\n%s", auditText(r.audit))
					break
				}
			}
		},
	}
}

// secureBootOffScenario is attack (b): the host turns Secure Boot off in
// the guest's variable store (it owns that file) and boots the changed
// UKI. The firmware starts it, the agent attests, and the verifier denies:
// Secure Boot is off and PCRs 4, 7 and 11 are not the predicted ones.
func secureBootOffScenario() scenario {
	return scenario{
		bootFile: tamperESP,
		beforeStart: func(t *testing.T, r *run, guest string) error {
			return harness.SetSecureBoot(r.world.Lab.Hostd.UEFIVarsPath(guest), false)
		},
		wantStage: "attest", wantReason: []string{"evidence_denied", "secure boot is not enabled"},
		check: func(t *testing.T, r *run) {
			checkDenied(t, r, "attest", "secure boot is not enabled")
			for _, pcr := range pinnedPCRs {
				checkDenied(t, r, "attest", "PCR sha256["+strconv.Itoa(pcr)+"]")
			}
		},
	}
}

// checkFirmwareRefused checks that hostd stopped the guest because the
// firmware refused its boot image, and that the agent never ran.
func checkFirmwareRefused(t *testing.T, r *run) {
	t.Helper()
	st := r.res.Status
	if st.State != "failed" || !strings.Contains(st.Reason, "firmware refused the boot image") {
		t.Errorf("guest ended %s (%s), want failed because the firmware refused the boot image", st.State, st.Reason)
	}
	if !strings.Contains(r.res.Console, "Access Denied") {
		t.Errorf("the console does not show the firmware's Access Denied")
	}
	if len(r.res.Boot.Agent) > 0 || r.res.Boot.OSInitReached {
		t.Errorf("the agent or the OS ran although the firmware refused the UKI:\n%s", r.res.Boot.AgentText())
	}
}

// checkProductionBoot checks the main flow (checkBooted) and the
// production path: Secure Boot on, affirming, and every pinned PCR in the
// token equal to the value confidant-image predicted at build time. On a
// mismatch it names the PCR and the first event that differs between the
// prediction and the firmware's own log.
func checkProductionBoot(t *testing.T, r *run) {
	t.Helper()
	checkBooted(t, r)
	b := r.res.Boot
	var tok harness.TokenCheck
	mustCheck(t, b, "token", &tok)
	if tok.Claims == nil {
		return // checkBooted reported it
	}
	if c := tok.Claims; c.SecBoot == nil || !*c.SecBoot || c.Status != "affirming" {
		t.Errorf("token: secboot %v status %q, want true and affirming", c.SecBoot, c.Status)
	}
	predicted, err := r.world.Image.PredictedPCRs()
	if err != nil {
		t.Fatal(err)
	}
	var quoted map[string]string
	if tok.Claims.TPM != nil {
		quoted = tok.Claims.TPM.PCRs["sha256"]
	}
	var log harness.EventLogCheck
	mustCheck(t, b, "eventlog", &log)
	for _, pcr := range pinnedPCRs {
		k := strconv.Itoa(pcr)
		if len(predicted[k]) != 1 {
			t.Errorf("reference values hold %d predicted values for PCR %d, want 1", len(predicted[k]), pcr)
			continue
		}
		if quoted[k] == predicted[k][0] {
			continue
		}
		t.Errorf("PCR %d: quoted %s, predicted %s; %s", pcr, quoted[k], predicted[k][0], firstDifference(t, r.world.Image, log, pcr))
	}
}

// firstDifference explains a PCR mismatch: the first event that differs
// between the prediction from the image's UKI and variable store template
// and the firmware's log that the guest reported.
func firstDifference(t *testing.T, im *harness.Image, log harness.EventLogCheck, pcr int) string {
	t.Helper()
	if log.Error != "" {
		return "no event log from the guest: " + log.Error
	}
	uki, err := os.ReadFile(im.Path(im.Manifest.UKI))
	if err != nil {
		return err.Error()
	}
	raw, err := os.ReadFile(im.Path(im.Manifest.UEFIVars))
	if err != nil {
		return err.Error()
	}
	vars, err := uefi.ParseVarStore(raw)
	if err != nil {
		return "parsing the variable store template: " + err.Error()
	}
	want, err := uefi.PredictOS(uki, vars)
	if err != nil {
		return "predicting: " + err.Error()
	}
	got, err := uefi.ParseEventLog(log.Log)
	if err != nil {
		return "parsing the guest's event log: " + err.Error()
	}
	if d := uefi.FirstDifference(want, got, pcr); d != "" {
		return d
	}
	return "the predicted events equal the logged ones, but the values differ"
}
