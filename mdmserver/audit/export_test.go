package audit

// SetMaxScan sets how many entries one List call examines, so a test of the bound need not
// write ten thousand.
func SetMaxScan(l *Log, n int) { l.maxScan = n }
