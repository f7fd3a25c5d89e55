// Command mdmserver runs the Hale server: Apple MDM (nanomdm), the agent, admin and access APIs,
// and the embedded certificate authority, on one bbolt file or a PostgreSQL database.
//
//	mdmserver [serve] [--listen ADDR] [--data DIR] [--database postgres://...] [--config FILE]
//	mdmserver restore --from FILE --data DIR [--audit-key FILE]
//	mdmserver version
//
// Configuration precedence: flags, then HALE_* environment variables (HALE_LISTEN, HALE_DATA,
// HALE_DATABASE, HALE_MASTER_KEY, ...), then the YAML file given by --config, then defaults.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/go-viper/mapstructure/v2"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/halemdm/hale/internal/buildinfo"
	"github.com/halemdm/hale/mdmserver"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mdmserver:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	v := viper.New()
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the Hale server (the default command)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), v)
		},
	}
	root := &cobra.Command{
		Use:           "mdmserver",
		Short:         "Hale device management and posture server",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          serve.RunE,
	}
	for _, c := range []*cobra.Command{root, serve} {
		bindFlags(c, v)
	}
	root.AddCommand(serve, newRestoreCommand(), newMigrateCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), buildinfo.String()) },
	})
	return root
}

// bindFlags declares the server flags on c and binds them to v. Both the root command and serve
// carry them so `mdmserver --listen X` and `mdmserver serve --listen X` both work.
func bindFlags(c *cobra.Command, v *viper.Viper) {
	d := mdmserver.Defaults()
	f := c.Flags()
	f.String("config", "", "YAML configuration file (see examples/mdmserver.yaml)")
	f.String("listen", d.Listen, "HTTPS listen address")
	f.String("data", d.DataDir, "data directory (hale.db, master key, CA, bootstrap token)")
	f.String("database", "", "PostgreSQL URL for the server's state (default: bbolt in the data directory)")
	f.String("public-url", "", "base URL devices use to reach the server (default https://localhost:<port>)")
	f.StringSlice("names", nil, "extra DNS names or IPs for the server certificate")
	f.String("log-level", d.LogLevel, "debug, info, warn or error")
	c.PreRunE = func(cmd *cobra.Command, _ []string) error {
		for _, name := range []string{"listen", "data", "database", "public-url", "names", "log-level"} {
			if err := v.BindPFlag(strings.ReplaceAll(name, "-", "_"), cmd.Flags().Lookup(name)); err != nil {
				return err
			}
		}
		if path, _ := cmd.Flags().GetString("config"); path != "" {
			v.SetConfigFile(path)
		}
		return nil
	}
}

// loadConfig resolves the configuration: flags > HALE_* environment > file > defaults.
func loadConfig(v *viper.Viper) (mdmserver.Config, error) {
	// Every option needs a default for AutomaticEnv to see its HALE_* variable: set them all from
	// the Config struct itself, so a new option cannot be forgotten here.
	d := mdmserver.Defaults()
	dv := reflect.ValueOf(d)
	for i := range dv.NumField() {
		if key := dv.Type().Field(i).Tag.Get("mapstructure"); key != "" {
			v.SetDefault(key, dv.Field(i).Interface())
		}
	}
	v.SetEnvPrefix("HALE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	if v.ConfigFileUsed() != "" {
		if err := v.ReadInConfig(); err != nil {
			return d, fmt.Errorf("read config file: %w", err)
		}
	}
	var cfg mdmserver.Config
	// A misspelt option in the file must not be dropped in silence.
	if err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true }); err != nil {
		return d, fmt.Errorf("decode configuration: %w", err)
	}
	return cfg, nil
}

// runServe runs the server until SIGINT or SIGTERM.
func runServe(ctx context.Context, v *viper.Viper) error {
	cfg, err := loadConfig(v)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := mdmserver.New(cfg, mdmserver.WithLogger(log))
	if err != nil {
		return err
	}
	serveErr := srv.ListenAndServe(ctx)
	if err := srv.Close(); err != nil {
		log.Error("closing the store", "err", err)
	}
	if serveErr == nil {
		log.Info("stopped cleanly")
	}
	return serveErr
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
