package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"

	"github.com/halemdm/hale/mdmserver"
)

// startSecond starts a second server on the first one's database (cfg, already serving), with a
// copy of its data directory as a second machine would hold it, and returns the URL its devices
// check in at and how to stop it.
func startSecond(ctx context.Context, cfg mdmserver.Config, opts []mdmserver.Option) (string, func(), error) {
	data := filepath.Join(filepath.Dir(cfg.DataDir), "data-second")
	if out, err := exec.Command("cp", "-a", cfg.DataDir, data).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("copy the data directory: %v %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	cfg.Listen, cfg.DataDir, cfg.PublicURL = ln.Addr().String(), data, ""
	srv, err := mdmserver.New(cfg, opts...)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	return "https://" + ln.Addr().String() + "/mdm", func() {
		cancel()
		<-served
		_ = srv.Close()
	}, nil
}
