package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/shared/uefi"
)

// Caps on what PCR prediction reads.
const (
	maxUKI  = 1 << 30
	maxVars = 16 << 20
)

// pcrPrediction is measure's JSON output of a PCR prediction.
type pcrPrediction struct {
	// PCRs are the final values by bank and index, as in the reference
	// values: {"sha256": {"4": HEX, ...}}.
	PCRs map[string]map[string]string `json:"pcrs"`
	// Events are the predicted events in log order.
	Events []build.PCREvent `json:"events"`
}

// runPredict predicts PCRs 4, 7 and 11 of a UKI booted with a variable
// store.
func runPredict(cmd *cobra.Command, f measureFlags, env Env) error {
	for _, name := range []string{"sim", "ovmf", "firmware", "kernel", "initrd", "append", "vcpus", "vcpu-type", "guest-features", "vmm-type"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("%w: --%s is for a launch measurement, not a PCR prediction", ErrUsage, name)
		}
	}
	if f.format != "hex" && f.format != "json" {
		return fmt.Errorf("%w: --output-format %q: want hex or json", ErrUsage, f.format)
	}
	if f.pcrs {
		if f.manifest == "" {
			return fmt.Errorf("%w: --pcrs predicts the PCRs of a --manifest's uki and uefi_vars", ErrUsage)
		}
		m, err := readManifestBoot(f.manifest)
		if err != nil {
			return err
		}
		if m.Boot != build.BootUEFI {
			return fmt.Errorf("%w: manifest %s is of boot %q: only boot uefi images have PCRs to predict", ErrUsage, f.manifest, m.Boot)
		}
		if f.uki == "" {
			f.uki = m.UKI
		}
		if f.uefiVars == "" {
			f.uefiVars = m.UEFIVars
		}
	} else if f.manifest != "" {
		return fmt.Errorf("%w: --manifest with --uki or --uefi-vars: give --pcrs to take them from the manifest", ErrUsage)
	}
	if f.uki == "" || f.uefiVars == "" {
		return fmt.Errorf("%w: a PCR prediction needs both --uki and --uefi-vars", ErrUsage)
	}
	image, err := readLimited(f.uki, maxUKI, "UKI")
	if err != nil {
		return err
	}
	vars, err := readLimited(f.uefiVars, maxVars, "UEFI variable store")
	if err != nil {
		return err
	}
	events, err := build.PredictPCRs(image, vars)
	if err != nil {
		return err
	}
	return printPrediction(env.Stdout, events, f.format)
}

func readLimited(path string, limit int64, what string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	if !st.Mode().IsRegular() || st.Size() > limit {
		return nil, fmt.Errorf("%w: the %s %s is not a regular file of at most %d bytes", ErrUsage, what, path, limit)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	return b, nil
}

func printPrediction(w io.Writer, events []uefi.Event, format string) error {
	values := build.PCRValues(uefi.Replay(events))
	evs := build.PCREvents(events)
	if format == "json" {
		b, err := json.MarshalIndent(pcrPrediction{PCRs: map[string]map[string]string{"sha256": values}, Events: evs}, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding the prediction: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	fmt.Fprintln(w, "predicted events (sha256):")
	for _, e := range evs {
		desc := strings.TrimSpace(strings.TrimPrefix(e.Description, e.TypeName))
		fmt.Fprintf(w, "  PCR %-2d %-34s %s  %s\n", e.PCR, e.TypeName, e.Digest, termsafe.Escape(desc))
	}
	fmt.Fprintln(w, "predicted PCRs (sha256; firmware-only PCRs 0-3 are not predicted):")
	var idx []int
	for i := range values {
		n, _ := strconv.Atoi(i) // PCRValues writes decimal indices
		idx = append(idx, n)
	}
	slices.Sort(idx)
	for _, i := range idx {
		fmt.Fprintf(w, "  PCR %-2d %s\n", i, values[strconv.Itoa(i)])
	}
	return nil
}
