package store

// QueuedReads is how many Gets wait for a batch slot (for tests).
func (s *Store) QueuedReads() int {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	return len(s.reads.queue)
}
