package mdmserver

import "context"

// SweepConsoleForTest ends the web console's expired sessions now, as its minutely sweep does.
func (s *Server) SweepConsoleForTest() { s.console.Sweep(context.Background()) }
