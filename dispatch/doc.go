// Package dispatch runs jobs through Amazon SQS and AWS Lambda instead of
// (or beside) long-lived worker processes (JOBS_DISPATCH=sqs):
//
//   - the API writes an outbox row in the statement that creates a job
//     (store.Options.Outbox) and a Sender sends it to the queue, one message
//     per job whose body is the job id; a crash between the insert and the
//     send leaves the row for the next sweep;
//   - the Lambda function (Handler, `jobsd lambda`) gets batches of those
//     messages, claims the named jobs with the worker's rules
//     (store.ClaimIDs: attempt counted, lease, worker id, committed before
//     any handler runs) and runs them with the worker's own machinery
//     (worker.RunClaimed: deadline, watchdog, heartbeats, fenced outcome);
//   - under a user cap (Worker.UserConcurrency, JOBS_USER_CONCURRENCY) the
//     claim takes a user's jobs only while fewer than the cap hold a lease
//     (store.ClaimIDsCapped, counted as the long-lived worker counts); a job
//     left out keeps its attempts and its message is sent again after
//     CapDelay, a new message, so that no receive count grows;
//   - each instance keeps an entry in the worker registry (the admin API's
//     workers), refreshed per invocation and removed at the runtime's
//     SIGTERM;
//   - a retryable failure sends the job's message again with DelaySeconds
//     set to its backoff (at most 900 s; a message that arrives early is
//     sent again for the rest);
//   - a message whose work could not be done or recorded (the database
//     unreachable, the re-send refused) is reported in batchItemFailures, so
//     SQS delivers it again after the visibility timeout; the dead-letter
//     queue's maxReceiveCount is set above any job's attempts, so a job's
//     message reaches it only when something is badly wrong;
//   - a schedule (EventBridge) invokes the same function to rescue expired
//     leases (with an outbox row for every job returned to the queue), send
//     what is left in the outbox, and delete finished jobs past retention.
//
// Every rule of the worker holds: at most max_attempts attempts (an attempt
// cut by the Lambda deadline was counted when claimed; its lease expires and
// the scheduled rescue retries or fails the job), completion exactly once
// (every outcome is fenced on its lease), and duplicate messages are
// harmless (a job that is not runnable is acknowledged and skipped).
package dispatch
