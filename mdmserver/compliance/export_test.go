package compliance

// Changing reports whether a change or a reload of s is under way (tests).
func Changing(s *PolicyStore) bool {
	if s.changing.TryLock() {
		s.changing.Unlock()
		return false
	}
	return true
}
