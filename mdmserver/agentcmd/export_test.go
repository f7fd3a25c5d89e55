package agentcmd

// Waiting returns how many polls wait on q for deviceID.
func Waiting(q *Queue, deviceID string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiters[deviceID])
}
