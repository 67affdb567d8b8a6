package store

// Scope is whose jobs a read or a cancel reaches, and who acts: one user's
// own jobs (the API's callers), or every user's (an operator). A job outside
// the scope is ErrNotFound, the same answer as a job that does not exist.
// The zero Scope reaches nothing.
type Scope struct {
	owner    string // the user whose jobs these are; unused with anyOwner
	anyOwner bool
	actor    string // who acts: recorded as cancelled_by
}

// OwnedBy is the scope of the user's own jobs, the user acting.
func OwnedBy(userID string) Scope { return Scope{owner: userID, actor: userID} }

// Operator is the scope of every user's jobs, operator acting. Its reads
// fill the operator's fields of job.Job (worker, cancelled by, requeue links).
func Operator(operator string) Scope { return Scope{anyOwner: true, actor: operator} }

// ownerArg is the statements' owner parameter: NULL for every user's jobs.
func (sc Scope) ownerArg() any {
	if sc.anyOwner {
		return nil
	}
	return sc.owner
}
