package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/hostd/internal/api"
)

// vmCmd is `vm`, one subcommand per guest operation, each a client of the
// daemon's API.
func vmCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	vm := &cobra.Command{Use: "vm", Short: "Manage guests through the running daemon"}
	vm.AddCommand(
		vmCreateCmd(client, stdout),
		vmStartCmd(client, stdout),
		vmStopCmd(client, stdout),
		vmDeleteCmd(client, stdout),
		vmListCmd(client, stdout),
		vmShowCmd(client, stdout),
		vmConsoleCmd(client, stdout),
	)
	return vm
}

func vmCreateCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	var file string
	create := &cobra.Command{
		Use:   "create -f spec.yaml",
		Short: "Define a guest from a YAML spec",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := LoadSpecFile(file)
			if err != nil {
				return err
			}
			g, err := client().Create(cmd.Context(), s)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "created %s (%s)\n", esc(g.Name), teeLabel(g))
			return nil
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "guest spec (YAML)")
	_ = create.MarkFlagRequired("file")
	return create
}

func vmStartCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use: "start NAME", Short: "Start a guest", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := client().Start(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "started %s (%s), pid %d, measurement %s\n", esc(g.Name), teeLabel(g), g.Status.PID, orDash(g.Status.Measurement))
			return nil
		},
	}
}

func vmStopCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	var dealloc, force bool
	stop := &cobra.Command{
		Use: "stop NAME", Short: "Stop a guest (power button, then kill after the timeout)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := client().Stop(cmd.Context(), args[0], api.StopRequest{Deallocate: dealloc, Force: force})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: %s (%s)\n", esc(g.Name), esc(string(g.Status.State)), esc(g.Status.Reason))
			return nil
		},
	}
	stop.Flags().BoolVar(&dealloc, "deallocate", false, "also remove the temp disk (a blank one is made at the next start)")
	stop.Flags().BoolVar(&force, "force", false, "kill QEMU at once")
	return stop
}

func vmDeleteCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete a guest, its temp disk and its vTPM", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := client().Delete(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted %s\n", esc(args[0]))
			return nil
		},
	}
}

func vmListCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	var listJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List guests", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gs, err := client().List(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(stdout, gs)
			}
			return printList(stdout, gs)
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	return list
}

func vmShowCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	var showJSON bool
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a guest's spec and status", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := client().Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showJSON {
				return printJSON(stdout, g)
			}
			return printGuest(stdout, g)
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")
	return show
}

func vmConsoleCmd(client func() *api.Client, stdout io.Writer) *cobra.Command {
	var follow, raw bool
	console := &cobra.Command{
		Use: "console NAME", Short: "Print the guest's serial console log", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var w io.Writer = stdout
			if !raw {
				w = &sanitizer{w: stdout}
			}
			return client().Console(cmd.Context(), args[0], follow, w)
		},
	}
	console.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new output")
	console.Flags().BoolVar(&raw, "raw", false, "do not filter terminal control sequences from the guest's output")
	return console
}
